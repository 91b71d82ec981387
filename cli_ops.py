"""`walletflow` commands for operators: approvals (maker-checker decisions on withdrawals and
refunds) and outbound webhooks (rotate, deliveries, resend). Registered by cli.parser()."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli import Commands, NoTenant, cmd_withdrawal_list, group, progress, tenant_transaction
from settings import get_settings


async def cmd_decide(args: argparse.Namespace) -> int:
    """Approve or reject any flow waiting for approval (withdrawal or refund) as the named admin:
    the same `decide` update the API sends, so the same maker-checker rules apply."""
    from api.decisions import decide
    from api.errors import ProblemError
    from temporal_client import connect

    client = await connect(get_settings())
    try:
        result = await decide(client, args.flow_id, args.admin, args.command_name == "approve",
                              args.note)
    except ProblemError as e:
        print(f"refused ({e.code}): {e.detail}", file=sys.stderr)
        return 1
    print(result)
    return 0


async def cmd_approvals_list(args: argparse.Namespace) -> int:
    """Withdrawals and refunds of a tenant waiting for an admin: a visibility query on the
    search attributes the flows keep (``workflows/console.py``; eventually consistent: a flow
    shows ~ms after its state changed); flows started before those existed are asked."""
    from temporal_client import connect
    from workflows import console

    if any(c in args.tenant for c in "'\"\\"):
        raise NoTenant(f"no tenant {args.tenant!r}")
    async with tenant_transaction(args.tenant):
        pass  # the tenant exists
    client = await connect(get_settings())
    progress("listing withdrawals and refunds awaiting approval …")
    query = (f"{console.TENANT.name} = '{args.tenant}' AND "
             f"{console.STATE.name} = 'awaiting_approval'")
    rows = [_approval_row(w) async for w in client.list_workflows(query)]
    rows += await _asked_approvals(client, args.tenant)
    progress(f"  {len(rows)} flow(s) awaiting approval")
    for row in sorted(rows, key=lambda r: (r[4], r[0])):
        print("\t".join(row))
    return 0


def _approval_row(w: Any) -> tuple[str, str, str, str, str]:
    """flow id, kind, user, amount, started (to the minute), from the flow's search attributes."""
    from contracts.money import format_amount
    from workflows import console

    attrs = w.typed_search_attributes
    amount, currency = attrs.get(console.AMOUNT), attrs.get(console.CURRENCY)
    money = f"{format_amount(amount, currency)} {currency}" if amount is not None and currency \
        else ""
    return (w.id, attrs.get(console.KIND) or "", attrs.get(console.USER) or "", money,
            w.start_time.isoformat()[:16])


async def _asked_approvals(client: Any, tenant: str) -> list[tuple[str, str, str, str, str]]:
    """Open withdrawals and refunds without the WalletflowState search attribute (started
    before it existed): their `status` query says whether they await approval."""
    from workflows import console

    query = (f"ExecutionStatus = 'Running' AND WorkflowType IN ('WithdrawalWorkflow', "
             f"'RefundWorkflow') AND {console.STATE.name} IS NULL")
    ids = [w.id async for w in client.list_workflows(query) if w.id.startswith(f"{tenant}:")]
    rows = []
    for flow_id in ids:
        st = await client.get_workflow_handle(flow_id).query("status")
        if st["state"] != "awaiting_approval":
            continue
        amounts = st.get("amounts") or {}
        amount = next((f"{v} {amounts.get(k + '_currency', amounts.get('currency', ''))}"
                       .strip() for k, v in amounts.items() if not k.endswith("currency")), "")
        rows.append((st["flow_id"], st["kind"], st.get("user_id") or "", amount,
                     st["created_at"][:16]))
    return rows


async def cmd_webhook_rotate(args: argparse.Namespace) -> int:
    """A new whsec_ secret; the old one keeps signing for 24 h."""
    from db.webhook_endpoints import WebhookEndpointRepository, new_secret

    secret = new_secret()
    async with tenant_transaction(args.tenant) as (session, tenant):
        row = await WebhookEndpointRepository(session).rotate(tenant["id"], args.endpoint_id,
                                                              secret)
        if row is None:
            raise NoTenant(f"{args.tenant} has no webhook endpoint {args.endpoint_id}")
    print(json.dumps({"id": row.id, "secret": secret,
                      "previous_valid_until": row.previous_valid_until.isoformat()}, indent=2))
    return 0


async def cmd_webhook_deliveries(args: argparse.Namespace) -> int:
    from db.webhook_endpoints import WebhookEndpointRepository

    async with tenant_transaction(args.tenant) as (session, tenant):
        rows = await WebhookEndpointRepository(session).deliveries(
            tenant["id"], args.endpoint, args.status, args.limit)
    for r in rows:
        print(f"{r.id}\t{r.endpoint_id}\t{r.type}\t{r.status}\t{r.attempts} attempt(s)"
              f"\t{r.last_status or r.last_error or ''}")
    return 0


async def cmd_webhook_resend(args: argparse.Namespace) -> int:
    """Send deliveries again under their webhook-id (e.g. after the receiver was fixed)."""
    from api.webhook_endpoints import start_resend
    from db.webhook_endpoints import WebhookEndpointRepository
    from temporal_client import connect

    settings = get_settings()
    async with tenant_transaction(args.tenant) as (session, tenant):
        repo = WebhookEndpointRepository(session)
        ids = list(args.delivery_id) or [
            r.id for r in await repo.deliveries(tenant["id"], args.endpoint, "failed", 10_000)]
        for delivery_id in ids:
            if not await repo.reopen(tenant["id"], delivery_id):
                raise NoTenant(f"{args.tenant} has no delivery {delivery_id}")
    client = await connect(settings)
    for n, delivery_id in enumerate(ids, 1):
        await start_resend(client, settings.temporal_task_queue, tenant["id"], delivery_id)
        progress(f"  re-sent {n}/{len(ids)}: {delivery_id}")
    print(f"{len(ids)} delivery(ies) re-sent")
    return 0


def add_decision(commands: Commands, name: str,
                 help: str, note_help: str | None) -> None:
    d = commands.add_parser(name, help=help)
    d.add_argument("flow_id")
    d.add_argument("--admin", required=True, help="the deciding admin (an admin key holder)")
    d.add_argument("--note", help=note_help)
    d.set_defaults(fn=cmd_decide, command_name=name)


def add_approval_commands(sub: Commands) -> None:
    wd = group(sub, "withdrawal", "withdrawals")
    for name in ("approve", "reject"):
        add_decision(wd, name, f"{name} a withdrawal as the named admin", None)
    wl = wd.add_parser("list", help="list withdrawals, e.g. --status awaiting_approval")
    wl.add_argument("--tenant", required=True)
    wl.add_argument("--status")
    wl.set_defaults(fn=cmd_withdrawal_list)

    for name in ("approve", "reject"):
        add_decision(sub, name, f"{name} a withdrawal or refund waiting for approval",
                     "a reason, kept in the flow's history")
    al = group(sub, "approvals", "flows waiting for an admin").add_parser(
        "list", help="withdrawals and refunds awaiting approval")
    al.add_argument("--tenant", required=True)
    al.set_defaults(fn=cmd_approvals_list)


def add_webhook_commands(sub: Commands) -> None:
    wh = group(sub, "webhook", "outbound webhooks")
    wr = wh.add_parser("rotate", help="a new endpoint secret (the old one is valid for 24 h)")
    wr.add_argument("--tenant", required=True)
    wr.add_argument("endpoint_id")
    wr.set_defaults(fn=cmd_webhook_rotate)
    wdl = wh.add_parser("deliveries", help="list deliveries, e.g. --status failed")
    wdl.add_argument("--tenant", required=True)
    wdl.add_argument("--endpoint")
    wdl.add_argument("--status", choices=["pending", "delivered", "failed", "disabled"])
    wdl.add_argument("--limit", type=int, default=50)
    wdl.set_defaults(fn=cmd_webhook_deliveries)
    wre = wh.add_parser("resend", help="re-send deliveries (default: every failed one)")
    wre.add_argument("--tenant", required=True)
    wre.add_argument("delivery_id", nargs="*")
    wre.add_argument("--endpoint", help="only this endpoint's failed deliveries")
    wre.set_defaults(fn=cmd_webhook_resend)
