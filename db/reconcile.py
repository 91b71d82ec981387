"""Reconciliation reads: the gateway objects flows recorded (``gateway_objects``) with what the
ledger moved for each, and ledger movements through a gateway account whose flow recorded no
object. Read only; nothing here commits."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.money import Money
from contracts.reconcile import LedgerOnly, RecordedObject

# Which ledger side a gateway object moves: (account kind, the transfer's side of it).
# A payment leaves the gateway's clearing account, a refund goes back into it, a payout is the
# posted hold into payouts in transit.
_MOVED = (
    "SELECT coalesce(sum(t.amount), 0) FROM transfers t JOIN accounts a ON a.id = "
    "CASE WHEN g.kind = 'payment' THEN t.debit_account_id ELSE t.credit_account_id END "
    "WHERE t.flow_id = g.flow_id AND t.state = 'posted' AND t.currency = g.currency "
    "AND a.kind = CASE WHEN g.kind = 'payout' THEN 'payouts_in_transit' "
    "ELSE 'gateway_clearing' END")

_RECORDED = text(
    f"SELECT g.kind, g.gateway, g.object_id, g.tenant_id, g.flow_id, g.amount, g.currency, "
    f"({_MOVED}) AS moved FROM gateway_objects g "
    "WHERE g.kind IN ('payment', 'refund', 'payout') "
    "AND g.created_at >= now() - make_interval(secs => :since) "
    "AND g.created_at < now() - make_interval(secs => :settle) "
    "AND (CAST(:t AS text) IS NULL OR g.tenant_id = :t) ORDER BY g.created_at, g.object_id")

_LEDGER_ONLY = text(
    "WITH moves AS (SELECT t.tenant_id::text AS tenant_id, t.flow_id, t.currency, t.amount, "
    "CASE WHEN a.kind = 'payouts_in_transit' THEN 'payout' "
    "WHEN a.id = t.debit_account_id THEN 'payment' ELSE 'refund' END AS kind "
    "FROM transfers t JOIN accounts a ON a.id IN (t.debit_account_id, t.credit_account_id) "
    "WHERE t.state = 'posted' AND (a.kind = 'gateway_clearing' OR "
    "(a.kind = 'payouts_in_transit' AND a.id = t.credit_account_id)) "
    "AND t.created_at >= now() - make_interval(secs => :since) "
    "AND t.created_at < now() - make_interval(secs => :settle) "
    "AND (CAST(:t AS text) IS NULL OR t.tenant_id = CAST(:t AS uuid))) "
    "SELECT m.kind, m.tenant_id, m.flow_id, m.currency, sum(m.amount) AS moved FROM moves m "
    "WHERE NOT EXISTS (SELECT 1 FROM gateway_objects g WHERE g.flow_id = m.flow_id "
    "AND g.kind = m.kind) GROUP BY m.kind, m.tenant_id, m.flow_id, m.currency "
    "ORDER BY m.flow_id, m.kind")

# Payments with nothing moved for them yet, older than ``stale`` (their webhook is late).
_UNPAID = text(
    f"SELECT g.gateway, g.object_id, g.tenant_id, g.flow_id, g.amount, g.currency "
    f"FROM gateway_objects g WHERE g.kind = 'payment' "
    "AND g.created_at >= now() - make_interval(secs => :since) "
    "AND g.created_at < now() - make_interval(secs => :stale) "
    f"AND (CAST(:t AS text) IS NULL OR g.tenant_id = :t) AND ({_MOVED}) = 0 "
    "ORDER BY g.created_at LIMIT :n")


class ReconcileRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def recorded(self, tenant_id: str | None, since_seconds: int,
                       settle_seconds: int = 0) -> list[RecordedObject]:
        """Every payment, refund and payout recorded in the window, with the ledger's
        movement for it."""
        rows = await self.session.execute(_RECORDED, {
            "t": tenant_id, "since": float(since_seconds), "settle": float(settle_seconds)})
        return [RecordedObject(r.kind, r.gateway, r.object_id, r.tenant_id, r.flow_id,
                               Money(int(r.amount), r.currency), int(r.moved)) for r in rows]

    async def ledger_only(self, tenant_id: str | None, since_seconds: int,
                          settle_seconds: int = 0) -> list[LedgerOnly]:
        """Posted movements through a gateway account whose flow recorded no such object."""
        rows = await self.session.execute(_LEDGER_ONLY, {
            "t": tenant_id, "since": float(since_seconds), "settle": float(settle_seconds)})
        return [LedgerOnly(r.kind, r.tenant_id, r.flow_id, Money(int(r.moved), r.currency))
                for r in rows]

    async def unpaid_payments(self, tenant_id: str | None, stale_seconds: int,
                              since_seconds: int, limit: int = 200) -> list[RecordedObject]:
        """Payments older than ``stale_seconds`` whose flow has moved nothing for them."""
        rows = await self.session.execute(_UNPAID, {
            "t": tenant_id, "stale": float(stale_seconds), "since": float(since_seconds),
            "n": limit})
        return [RecordedObject("payment", r.gateway, r.object_id, r.tenant_id, r.flow_id,
                               Money(int(r.amount), r.currency), 0) for r in rows]
