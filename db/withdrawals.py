"""Withdrawal records (the `withdrawals` table). Nothing here commits: the caller owns the
transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class WithdrawalRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def list_oldest_first(self, tenant_id: str, status: str | None) -> Sequence[Any]:
        """A tenant's withdrawals, optionally of one status, oldest first (flow_id, user_id,
        amount, currency, status, requested_by, created_at)."""
        return (await self.session.execute(text(
            "SELECT flow_id, user_id, amount, currency, status, requested_by, created_at "
            "FROM withdrawals WHERE tenant_id = :t AND (CAST(:s AS text) IS NULL OR status = :s)"
            " ORDER BY created_at"), {"t": tenant_id, "s": status})).all()

    async def withdrawn_today(self, tenant_id: str, user_id: str, currency: str,
                              other_than: str, not_counted: list[str]) -> int:
        """What the user's other withdrawals in ``currency`` took today (those whose status is
        in ``not_counted`` released their funds, or hold nothing yet)."""
        return int((await self.session.execute(text(
            "SELECT coalesce(sum(amount), 0) FROM withdrawals WHERE tenant_id = :t "
            "AND user_id = :u AND currency = :c AND flow_id <> :f "
            "AND created_at >= date_trunc('day', now()) AND status <> ALL(:released)"),
            {"t": tenant_id, "u": user_id, "c": currency, "f": other_than,
             "released": not_counted})).scalar_one())

    async def record_status(self, flow_id: str, status: str, error: str | None,
                            payout_id: str | None) -> None:
        await self.session.execute(text(
            "UPDATE withdrawals SET status = :s, error = :e, payout_id = coalesce(:p, payout_id),"
            " updated_at = now() WHERE flow_id = :f"),
            {"s": status, "e": error, "p": payout_id, "f": flow_id})


class WithdrawalQueries:
    """The API's withdrawal statements. Nothing here commits."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def create(self, tenant_id: str, flow_id: str, user_id: str, amount: int,
                     currency: str, method: str, destination: str, requested_by: str) -> None:
        """The withdrawal row a WithdrawalWorkflow starts from (once per flow)."""
        await self.session.execute(text(
            "INSERT INTO withdrawals (tenant_id, flow_id, user_id, amount, currency, method, "
            "destination, requested_by) VALUES (:t, :f, :u, :a, :c, :m, :d, :r) "
            "ON CONFLICT DO NOTHING"),
            {"t": tenant_id, "f": flow_id, "u": user_id, "a": amount, "c": currency,
             "m": method, "d": destination, "r": requested_by})

    async def list_newest_first(self, tenant_id: str, status: str | None,
                                limit: int = 200, before: tuple[Any, str] | None = None
                                ) -> Sequence[Any]:
        """A tenant's withdrawals, optionally of one status, newest first, before the
        (created_at, flow id) position."""
        return (await self.session.execute(text(
            "SELECT * FROM withdrawals WHERE tenant_id = :t AND (CAST(:s AS text) IS NULL "
            "OR status = :s) AND (CAST(:bc AS timestamptz) IS NULL OR (created_at, flow_id) < "
            "(CAST(:bc AS timestamptz), CAST(:bf AS text))) "
            "ORDER BY created_at DESC, flow_id DESC LIMIT :lim"),
            {"t": tenant_id, "s": status, "lim": limit, "bc": before[0] if before else None,
             "bf": before[1] if before else None})).all()
