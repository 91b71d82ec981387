"""Refund requests (the ``refunds`` table): status and how the amount splits between wallet
and card. Nothing here commits: the caller owns the transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class RefundRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def get(self, flow_id: str) -> dict[str, Any]:
        """The refund's status, wallet part and card part."""
        row = (await self.session.execute(text(
            "SELECT status, wallet_part, card_part FROM refunds WHERE flow_id = :f"),
            {"f": flow_id})).one()
        return dict(row._mapping)

    async def status(self, flow_id: str) -> str:
        return str((await self.session.execute(text(
            "SELECT status FROM refunds WHERE flow_id = :f"), {"f": flow_id})).scalar_one())

    async def record(self, flow_id: str, status: str, wallet: int, card: int,
                     error: str | None = None) -> None:
        await self.session.execute(text(
            "UPDATE refunds SET status = :st, error = :e, wallet_part = :w, card_part = :c, "
            "updated_at = now() WHERE flow_id = :f"),
            {"st": status, "e": error, "w": wallet, "c": card, "f": flow_id})


class RefundQueries:
    """The API's refund statements. Nothing here commits."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def create(self, tenant_id: str, flow_id: str, order_id: str, amount: int,
                     currency: str, destination: str, requested_by: str) -> None:
        """The refund row a RefundWorkflow starts from (once per flow)."""
        await self.session.execute(text(
            "INSERT INTO refunds (tenant_id, flow_id, order_id, amount, currency, destination, "
            "requested_by) VALUES (:t, :f, :o, :a, :c, :d, :r) ON CONFLICT DO NOTHING"),
            {"t": tenant_id, "f": flow_id, "o": order_id, "a": amount, "c": currency,
             "d": destination, "r": requested_by})

    async def held_for_order(self, tenant_id: str, order_id: str, flow_id: str
                             ) -> tuple[int, bool]:
        """What the order's refunds hold so far — reserved, those awaiting approval included,
        plus those requested and not yet reserved — and whether ``flow_id``'s refund is among
        them. Locks the order until the transaction ends, so concurrent requests count each
        other's refunds (each records its row before it commits)."""
        # Lock first, then read in a second statement: under READ COMMITTED a statement that
        # waited for the lock still reads the other tables as of its start, so one statement
        # would miss the refund row the lock's previous holder just committed.
        await self.session.execute(text(
            "SELECT 1 FROM orders WHERE tenant_id = :t AND order_id = :o FOR UPDATE"),
            {"t": tenant_id, "o": order_id})
        row = (await self.session.execute(text(
            "SELECT o.reserved_refunds + coalesce((SELECT sum(r.amount) FROM refunds r "
            "WHERE r.tenant_id = o.tenant_id AND r.order_id = o.order_id "
            "AND r.status = 'requested'), 0) AS held, EXISTS (SELECT 1 FROM refunds r "
            "WHERE r.tenant_id = o.tenant_id AND r.flow_id = :f) AS mine "
            "FROM orders o WHERE o.tenant_id = :t AND o.order_id = :o"),
            {"t": tenant_id, "o": order_id, "f": flow_id})).one()
        return int(row.held), bool(row.mine)
