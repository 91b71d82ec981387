"""Campaigns (the ``campaigns`` table); their money is in the ledger (a ``campaign``
account). Nothing here commits: the caller owns the transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.outbox import emit


class CampaignRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def lock(self, tenant_id: str, campaign_id: str) -> dict[str, Any]:
        """The campaign row, locked until the transaction ends: donations to one campaign
        serialise on it, so a capped target is never overshot."""
        row = (await self.session.execute(text(
            "SELECT * FROM campaigns WHERE tenant_id = :t AND campaign_id = :c FOR UPDATE"),
            {"t": tenant_id, "c": campaign_id})).one()
        return dict(row._mapping)

    async def close(self, tenant_id: str, campaign_id: str, reason: str) -> bool:
        """Close an open campaign and record ``campaign.closed``; False if it was closed."""
        closed = (await self.session.execute(text(
            "UPDATE campaigns SET status = 'closed', closed_reason = :r, closed_at = now() "
            "WHERE tenant_id = :t AND campaign_id = :c AND status = 'open' "
            "RETURNING campaign_id"),
            {"t": tenant_id, "c": campaign_id, "r": reason})).first() is not None
        if closed:
            await emit(self.session, tenant_id, f"campaign.closed:{campaign_id}",
                       "campaign.closed", {"campaign_id": campaign_id, "reason": reason})
        return closed


_PROGRESS = (
    "SELECT c.*, coalesce(a.posted, 0) AS raised, "
    "(SELECT count(DISTINCT t.debit_account_id) FROM transfers t WHERE t.credit_account_id = a.id "
    "AND t.kind = 'donation') AS donors FROM campaigns c LEFT JOIN accounts a ON "
    "a.tenant_id = c.tenant_id AND a.kind = 'campaign' AND a.owner_id = c.campaign_id "
    "AND a.currency = c.currency WHERE c.tenant_id = :t")


class CampaignQueries:
    """The API's campaign statements: campaigns with their progress (raised and donors, read
    from the ledger), a new campaign, a user's donations. Nothing here commits."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def create(self, tenant_id: str, campaign_id: str, name: str, currency: str,
                     target: int, capped: bool, ends_at: Any, flow_id: str) -> bool:
        """False when the campaign id is taken."""
        created = (await self.session.execute(text(
            "INSERT INTO campaigns (tenant_id, campaign_id, name, currency, target, capped, "
            "ends_at, flow_id) VALUES (:t, :c, :n, :cur, :tg, :cap, :e, :f) "
            "ON CONFLICT DO NOTHING RETURNING campaign_id"),
            {"t": tenant_id, "c": campaign_id, "n": name, "cur": currency, "tg": target,
             "cap": capped, "e": ends_at, "f": flow_id})).first()
        return created is not None

    async def with_progress(self, tenant_id: str, before: tuple[Any, str] | None = None,
                            limit: int = 200) -> list[dict[str, Any]]:
        """Campaigns with their progress, newest first, before (created_at, campaign id)."""
        rows = await self.session.execute(
            text(_PROGRESS + " AND (CAST(:bc AS timestamptz) IS NULL OR "
                 "(c.created_at, c.campaign_id) < (CAST(:bc AS timestamptz), CAST(:bi AS text)))"
                 " ORDER BY c.created_at DESC, c.campaign_id DESC LIMIT :lim"),
            {"t": tenant_id, "lim": limit, "bc": before[0] if before else None,
             "bi": before[1] if before else None})
        return [dict(r._mapping) for r in rows]

    async def one_with_progress(self, tenant_id: str, campaign_id: str
                                ) -> dict[str, Any] | None:
        row = (await self.session.execute(text(_PROGRESS + " AND c.campaign_id = :c"),
                                          {"t": tenant_id, "c": campaign_id})).first()
        return dict(row._mapping) if row else None

    async def donations_of(self, tenant_id: str, user_id: str, before_id: int | None = None,
                           limit: int = 200) -> list[dict[str, Any]]:
        """A user's donations, newest first, before the transfer id ``before_id`` (id,
        flow_id, amount, currency, created_at, campaign_id)."""
        rows = await self.session.execute(text(
            "SELECT t.id, t.flow_id, t.amount, t.currency, t.created_at, "
            "c.owner_id AS campaign_id "
            "FROM transfers t JOIN accounts d ON d.id = t.debit_account_id "
            "JOIN accounts c ON c.id = t.credit_account_id WHERE t.tenant_id = :t "
            "AND t.kind = 'donation' AND d.owner_id = :u "
            "AND (CAST(:b AS bigint) IS NULL OR t.id < CAST(:b AS bigint)) "
            "ORDER BY t.id DESC LIMIT :lim"),
            {"t": tenant_id, "u": user_id, "lim": limit, "b": before_id})
        return [dict(r._mapping) for r in rows]
