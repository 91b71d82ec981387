"""Wallet reads: balances per currency and the transaction history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from api.deps import AdminPrincipal, ClientPrincipal, DbSession
from api.pagination import id_position, next_page
from api.users import known_user
from contracts.money import format_amount
from db.ledger import LedgerRepository
from db.ledger_reads import Balance

router = APIRouter(tags=["wallets"])


def _balance(b: Balance) -> dict[str, Any]:
    fmt = lambda v: format_amount(v, b.currency)  # noqa: E731
    return {"account": b.kind, "currency": b.currency, "posted": fmt(b.posted),
            "pending_in": fmt(b.pending_in), "pending_out": fmt(b.pending_out),
            "available": fmt(b.available)}


@router.get("/v1/wallets/{user_id}", summary="A wallet's balances per currency")
async def get_wallet(user_id: str, principal: ClientPrincipal,
                     session: DbSession) -> dict[str, Any]:
    await known_user(session, principal, user_id)
    repo = LedgerRepository(session)
    balances = await repo.balances(principal.tenant_id, user_id)
    cashback = await repo.cashback(principal.tenant_id, user_id)
    return {"user_id": user_id, "balances": [_balance(b) for b in balances],
            "cashback": [{"currency": c, "pending": format_amount(p, c),
                          "available": format_amount(a, c), "clawed_back": format_amount(x, c)}
                         for c, p, a, x in cashback]}


@router.get("/v1/wallets/{user_id}/transactions", summary="A wallet's history, newest first")
async def wallet_history(
    user_id: str,
    principal: ClientPrincipal,
    session: DbSession,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> dict[str, Any]:
    await known_user(session, principal, user_id)
    before = id_position(cursor)
    repo = LedgerRepository(session)
    accounts = [b.account_id for b in await repo.balances(principal.tenant_id, user_id)]
    rows = await repo.history(principal.tenant_id, accounts, before, limit + 1) if accounts else []
    page, next_cursor = next_page(rows, limit, lambda r: r["id"])
    data = [{
        "transfer_id": r["id"], "kind": r["kind"], "state": r["state"],
        "direction": "debit" if r["outgoing"] else "credit",
        "amount": format_amount(r["amount"], r["currency"]), "currency": r["currency"],
        "balance_after": (format_amount(r["balance_after"], r["currency"])
                          if r["balance_after"] is not None else None),
        "counterparty": r["counterparty"], "flow_id": r["flow_id"],
        "created_at": r["created_at"].isoformat(),
    } for r in page]
    return {"data": data, "next_cursor": next_cursor}


@router.get("/v1/ledger/accounts", summary="The tenant's system accounts (admin)")
async def system_accounts(principal: AdminPrincipal, session: DbSession) -> dict[str, Any]:
    balances = await LedgerRepository(session).system_balances(principal.tenant_id)
    return {"data": [_balance(b) | {"owner": b.owner_id} for b in balances]}
