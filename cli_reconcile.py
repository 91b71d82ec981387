"""`walletflow reconcile`: the ledger compared with the gateway's own payments, refunds and
payouts (``activities/reconcile.py``, what the scheduled janitor runs too). One line per drift
on stdout, progress on stderr; exit 1 on drift, 0 when clean. Registered by cli.parser()."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime

from cli import Commands, progress, tenant_transaction

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def since_seconds(value: str) -> int:
    """``--since``: a duration back from now (``90m``, ``6h``, ``2d``, seconds) or an ISO 8601
    time."""
    match = _DURATION.match(value.strip())
    if match:
        return int(match.group(1)) * _UNIT[match.group(2)]
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a duration (90m, 6h, 2d) nor an ISO 8601 time") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max(0, int((datetime.now(UTC) - when).total_seconds()))


async def cmd_reconcile(args: argparse.Namespace) -> int:
    from activities.reconcile import Reconciler
    from cli import _sessions
    from contracts.reconcile import ReconcileInput
    from settings import get_settings
    from worker import build_gateways

    tenant_id = None
    if args.tenant:
        async with tenant_transaction(args.tenant) as (_, tenant):
            tenant_id = str(tenant["id"])
    engine, sessions, _ = await _sessions()
    gateways = build_gateways(get_settings())
    try:
        progress(f"reconciling {args.tenant or 'every tenant'}, the last {args.since} seconds …")
        report = await Reconciler(gateways, sessions).report(
            ReconcileInput(tenant_id, args.since, args.settle), progress)
    finally:
        for gateway in gateways.values():
            await gateway.close()
        await engine.dispose()
    for d in report.drifts:
        print(f"{d.problem}\t{d.kind}\t{d.object_id or '-'}\t{d.flow_id or '-'}\t{d.detail}")
    progress(f"{report.checked} checked, {len(report.drifts)} drifting")
    return 1 if report.drifts else 0


def add_reconcile_commands(sub: Commands) -> None:
    rc = sub.add_parser("reconcile", help="compare the ledger with the gateway's payments, "
                        "refunds and payouts; exit 1 on drift")
    rc.add_argument("--tenant", help="one tenant's slug (default: every tenant)")
    rc.add_argument("--since", type=since_seconds, default=2 * 86400,
                    help="how far back: a duration (90m, 6h, 2d) or an ISO 8601 time "
                         "(default 2d)")
    rc.add_argument("--settle", type=since_seconds, default=0,
                    help="leave objects younger than this alone (webhooks in flight; default 0)")
    rc.set_defaults(fn=cmd_reconcile)
