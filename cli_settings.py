"""`walletflow settings`: show and change a tenant's settings (rewards, refunds, withdrawals,
events) by the same rules as the API (``contracts/settings.py``), every change audited as
``cli:<user>`` (or ``--actor``). Registered by cli.parser()."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from decimal import Decimal

from cli import Commands, group, tenant_transaction
from contracts.settings import GROUPS, SettingsError
from db.settings_audit import SettingsAudit
from db.tenants import TenantSettings
from settings import get_settings


def _print(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


async def cmd_settings_show(args: argparse.Namespace) -> int:
    async with tenant_transaction(args.tenant) as (session, tenant):
        repo = TenantSettings(session)
        shown = {g: await repo.show(tenant["id"], g) for g in ([args.group] if args.group
                                                                else GROUPS)}
    _print(shown[args.group] if args.group else shown)
    return 0


def _changes(text: str) -> object:
    """The --json object, numbers kept exact (as the API parses them)."""
    return json.loads(text, parse_float=Decimal)


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name anywhere (e.g. a bare container)
        return "unknown"


async def cmd_settings_set(args: argparse.Namespace) -> int:
    try:
        changes = _changes(args.json)
    except ValueError as e:
        print(f"refused: --json is not valid JSON: {e}", file=sys.stderr)
        return 1
    actor = args.actor or f"cli:{_user()}"
    production = get_settings().walletflow_env == "production"
    try:
        async with tenant_transaction(args.tenant) as (session, tenant):
            shown = await TenantSettings(session).change(tenant["id"], args.group, changes,
                                                         actor, production=production)
    except SettingsError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    _print(shown)
    return 0


async def cmd_settings_audit(args: argparse.Namespace) -> int:
    async with tenant_transaction(args.tenant) as (session, tenant):
        rows = await SettingsAudit(session).newest_first(tenant["id"], None, args.limit,
                                                         args.group)
    for r in rows:
        print(f"{r['changed_at']:%Y-%m-%d %H:%M:%S}\t{r['setting_group']}\t{r['actor']}"
              f"\t{json.dumps(r['old_value'], sort_keys=True)} -> "
              f"{json.dumps(r['new_value'], sort_keys=True)}")
    return 0


def add_settings_commands(sub: Commands) -> None:
    st = group(sub, "settings", "tenant settings (as PUT /v1/settings/<group>)")
    show = st.add_parser("show", help="the settings as they apply (one group or all)")
    show.add_argument("--tenant", required=True)
    show.add_argument("group", nargs="?", choices=GROUPS)
    show.set_defaults(fn=cmd_settings_show)
    put = st.add_parser("set", help="replace the fields named in --json (null: the default); "
                        "audited")
    put.add_argument("--tenant", required=True)
    put.add_argument("group", choices=GROUPS)
    put.add_argument("--json", required=True, metavar="OBJECT",
                     help='e.g. \'{"approval_threshold": {"EUR": "100.00"}}\'')
    put.add_argument("--actor", help="who is changing it (default cli:<your user name>)")
    put.set_defaults(fn=cmd_settings_set)
    audit = st.add_parser("audit", help="the changes, newest first")
    audit.add_argument("--tenant", required=True)
    audit.add_argument("--group", choices=GROUPS)
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(fn=cmd_settings_audit)
