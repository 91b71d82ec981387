"""The `walletflow` command line: migrations, tenants and keys, users and stores, approvals,
outbound webhooks, wallets and the ledger check. `walletflow <command> --help` on every command."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import create_engine, resolve_database_url, session_factory
from db.ledger import LedgerRepository, sqlstate
from db.migrate import upgrade_async
from db.stores import StoreRepository
from db.tenants import TenantRepository
from db.users import UserRepository
from settings import get_settings


async def _sessions() -> Any:
    settings = get_settings()
    url = await resolve_database_url(settings.database_url, settings.state_dir)
    engine = create_engine(url, 2)
    return engine, session_factory(engine), url


async def cmd_migrate(_: argparse.Namespace) -> int:
    engine, _s, url = await _sessions()
    await engine.dispose()
    await upgrade_async(url)
    print("migrations applied")
    return 0


async def create_tenant(sessions: Any, slug: str, name: str, admin: str) -> dict[str, str]:
    async with sessions.begin() as session:
        repo = TenantRepository(session)
        tenant_id = await repo.create_tenant(slug, name)
        client_key = await repo.create_key(tenant_id, ["client"], f"{slug}-backend")
        admin_key = await repo.create_key(tenant_id, ["admin"], admin)
    return {"tenant_id": tenant_id, "slug": slug, "client_key": client_key, "admin_key": admin_key}


async def cmd_tenant_create(args: argparse.Namespace) -> int:
    engine, sessions, _ = await _sessions()
    try:
        out = await create_tenant(sessions, args.slug, args.name or args.slug, args.admin)
    finally:
        await engine.dispose()
    print(json.dumps(out, indent=2))
    return 0


class NoTenant(Exception):
    pass


@asynccontextmanager
async def tenant_transaction(slug: str) -> AsyncIterator[tuple[AsyncSession, dict[str, Any]]]:
    """A committed-on-success transaction and the tenant named by ``slug``."""
    engine, sessions, _ = await _sessions()
    try:
        async with sessions.begin() as session:
            tenant = await TenantRepository(session).tenant_by_slug(slug)
            if tenant is None:
                raise NoTenant(slug)
            yield session, tenant
    finally:
        await engine.dispose()


async def cmd_key_create(args: argparse.Namespace) -> int:
    async with tenant_transaction(args.tenant) as (session, tenant):
        key = await TenantRepository(session).create_key(tenant["id"], args.scope, args.actor)
    print(key)
    return 0


async def cmd_key_rotate(args: argparse.Namespace) -> int:
    """Revoke a key and issue a new one with the same scopes and holder."""
    async with tenant_transaction(args.tenant) as (session, tenant):
        old = await TenantRepository(session).revoke_key(tenant["id"], args.key_id)
        if old is None:
            raise NoTenant(f"{args.tenant} has no active key {args.key_id}")
        scopes, actor = old
        key = await TenantRepository(session).create_key(tenant["id"], scopes, actor)
    print(key)
    return 0


async def cmd_wallet_show(args: argparse.Namespace) -> int:
    from contracts.money import format_amount
    from db.ledger import LedgerRepository

    async with tenant_transaction(args.tenant) as (session, tenant):
        repo = LedgerRepository(session)
        balances = await repo.balances(tenant["id"], args.user_id)
        history = await repo.history(tenant["id"], [b.account_id for b in balances], None,
                                     args.limit) if balances else []
    for b in balances:
        print(f"{b.kind:12} {b.currency}  posted {format_amount(b.posted, b.currency):>12}  "
              f"pending in {format_amount(b.pending_in, b.currency):>10}  pending out "
              f"{format_amount(b.pending_out, b.currency):>10}  available "
              f"{format_amount(b.available, b.currency):>12}")
    for h in history:
        sign = "-" if h["outgoing"] else "+"
        print(f"{h['created_at']:%Y-%m-%d %H:%M:%S}  {h['kind']:16} {h['state']:8} "
              f"{sign}{format_amount(h['amount'], h['currency'])} {h['currency']}  "
              f"{h['flow_id'] or ''}")
    return 0


async def cmd_user_create(args: argparse.Namespace) -> int:
    async with tenant_transaction(args.tenant) as (session, tenant):
        created = await UserRepository(session).create(tenant["id"], args.user_id, args.email)
    print("created" if created else "exists")
    return 0


async def cmd_store_add(args: argparse.Namespace) -> int:
    async with tenant_transaction(args.tenant) as (session, tenant):
        key = args.public_key or f"pk_{secrets.token_hex(12)}"
        secret = await StoreRepository(session).add_credential(tenant["id"], args.platform, key,
                                                               args.secret)
    print(json.dumps({"platform": args.platform, "public_key": key, "secret": secret}, indent=2))
    return 0


async def cmd_withdrawal_list(args: argparse.Namespace) -> int:
    from db.withdrawals import WithdrawalRepository

    async with tenant_transaction(args.tenant) as (session, tenant):
        rows = await WithdrawalRepository(session).list_oldest_first(tenant["id"], args.status)
    for r in rows:
        print(f"{r.flow_id}\t{r.user_id}\t{r.amount} {r.currency} (minor units)\t{r.status}"
              f"\trequested by {r.requested_by}\t{r.created_at:%Y-%m-%d %H:%M}")
    return 0


def progress(message: str) -> None:
    """Progress of a long operation, on stderr (stdout stays the result)."""
    print(message, file=sys.stderr, flush=True)


async def cmd_ledger_check(_: argparse.Namespace) -> int:
    engine, sessions, _ = await _sessions()
    try:
        async with sessions() as session:
            problems = await LedgerRepository(session).check_invariants(progress)
    finally:
        await engine.dispose()
    for p in problems:
        print(f"VIOLATION: {p}")
    if problems:
        return 1
    print("ledger ok: every transfer balances, cached balances match, no user account is "
          "negative, no idempotency key is used twice")
    return 0


Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def group(sub: Commands, name: str, help: str
          ) -> Commands:
    """A command with subcommands, e.g. `walletflow tenant create`."""
    return sub.add_parser(name, help=help).add_subparsers(dest="sub", required=True)


def add_tenant_commands(sub: Commands) -> None:
    tenant = group(sub, "tenant", "tenants")
    tc = tenant.add_parser("create", help="create a tenant with a client key and an admin key")
    tc.add_argument("slug")
    tc.add_argument("--name")
    tc.add_argument("--admin", default="admin", help="the admin key holder's identity")
    tc.set_defaults(fn=cmd_tenant_create)

    key = group(sub, "key", "API keys")
    kc = key.add_parser("create", help="create an API key")
    kc.add_argument("--tenant", required=True)
    kc.add_argument("--scope", action="append", choices=["client", "admin"], required=True)
    kc.add_argument("--actor", required=True, help="who holds the key")
    kc.set_defaults(fn=cmd_key_create)
    kr = key.add_parser("rotate", help="revoke a key and print its replacement")
    kr.add_argument("--tenant", required=True)
    kr.add_argument("key_id", help="the key's public id (wfk_…, the part before the secret)")
    kr.set_defaults(fn=cmd_key_rotate)


def add_account_commands(sub: Commands) -> None:
    ws = group(sub, "wallet", "wallets").add_parser(
        "show", help="a wallet's balances and latest transactions")
    ws.add_argument("--tenant", required=True)
    ws.add_argument("user_id")
    ws.add_argument("--limit", type=int, default=20)
    ws.set_defaults(fn=cmd_wallet_show)

    uc = group(sub, "user", "users").add_parser("create", help="register a user")
    uc.add_argument("--tenant", required=True)
    uc.add_argument("user_id")
    uc.add_argument("--email")
    uc.set_defaults(fn=cmd_user_create)

    sa = group(sub, "store", "stores").add_parser(
        "add", help="connect the widget, a Shopify shop or a WooCommerce store; prints its "
        "signing secret")
    sa.add_argument("--tenant", required=True)
    sa.add_argument("--platform", required=True, choices=["widget", "shopify", "woocommerce"])
    sa.add_argument("--public-key", help="shop domain / store URL (widget: generated)")
    sa.add_argument("--secret", help="use this secret (Shopify/WooCommerce give you one)")
    sa.set_defaults(fn=cmd_store_add)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="walletflow", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(fn=cmd_migrate)
    add_tenant_commands(sub)
    add_account_commands(sub)
    from cli_ops import add_approval_commands, add_webhook_commands

    add_approval_commands(sub)
    add_webhook_commands(sub)
    from cli_reconcile import add_reconcile_commands

    add_reconcile_commands(sub)
    from cli_settings import add_settings_commands

    add_settings_commands(sub)
    group(sub, "ledger", "the ledger").add_parser(
        "check", help="verify every ledger invariant; exit 1 on a violation"
    ).set_defaults(fn=cmd_ledger_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    get_settings()  # production mode: exits listing what is missing
    try:
        return asyncio.run(args.fn(args))
    except NoTenant as e:
        print(f"not found: {e}", file=sys.stderr)
        return 2
    except DBAPIError as e:
        if sqlstate(e) != "42P01":  # undefined table
            raise
        print("the database has no walletflow tables yet: run `walletflow migrate` first",
              file=sys.stderr)
        return 2


def entry() -> None:
    """The `walletflow` console script."""
    from temporal_client import exit_now

    exit_now(main())


if __name__ == "__main__":
    entry()
