"""Campaign and donation activities. A donation is one database transaction: the campaign row is
locked, so concurrent donations around a capped target never overshoot it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.donation import CAMPAIGN_CLOSE, DONATE, CampaignInput, DonationInput, DonationResult
from contracts.ledger import AccountRef, TransferRequest
from contracts.money import POINTS, format_amount
from contracts.rewards import points_for
from db.ledger import InsufficientFunds, LedgerRepository


async def emit(session: AsyncSession, tenant_id: str, key: str, type_: str,
               payload: dict[str, Any]) -> None:
    """Record a business event in the outbox, once per key, in the caller's transaction."""
    await session.execute(text(
        "INSERT INTO outbox_events (tenant_id, event_key, type, payload) "
        "VALUES (:t, :k, :ty, CAST(:p AS jsonb)) ON CONFLICT DO NOTHING"),
        {"t": tenant_id, "k": key, "ty": type_, "p": json.dumps(payload)})


async def close_campaign(session: AsyncSession, tenant_id: str, campaign_id: str,
                         reason: str) -> bool:
    closed = (await session.execute(text(
        "UPDATE campaigns SET status = 'closed', closed_reason = :r, closed_at = now() "
        "WHERE tenant_id = :t AND campaign_id = :c AND status = 'open' RETURNING campaign_id"),
        {"t": tenant_id, "c": campaign_id, "r": reason})).first() is not None
    if closed:
        await emit(session, tenant_id, f"campaign.closed:{campaign_id}", "campaign.closed",
                   {"campaign_id": campaign_id, "reason": reason})
    return closed


class CampaignActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @activity.defn(name=DONATE)
    async def donate(self, inp: DonationInput) -> DonationResult:
        key = f"{inp.flow_id}:donation"
        async with self.sessions.begin() as session:
            ledger = LedgerRepository(session)
            done = (await session.execute(text(
                "SELECT 1 FROM transfers WHERE tenant_id = :t AND idempotency_key = :k"),
                {"t": inp.tenant_id, "k": key})).first()
            campaign = (await session.execute(text(
                "SELECT * FROM campaigns WHERE tenant_id = :t AND campaign_id = :c FOR UPDATE"),
                {"t": inp.tenant_id, "c": inp.campaign_id})).one()._mapping
            cur = inp.amount.currency
            account = AccountRef("campaign", inp.campaign_id, cur)
            if done is None:
                refusal = None
                if campaign["status"] != "open":
                    refusal = ("campaign_closed: the campaign is closed "
                               f"({campaign['closed_reason']})")
                elif campaign["ends_at"] <= datetime.now(UTC):
                    refusal = "campaign_closed: the campaign has ended"
                else:
                    raised = next((b.posted for b in await ledger.balances(
                        inp.tenant_id, inp.campaign_id, ("campaign",)) if b.currency == cur), 0)
                    left = campaign["target"] - raised
                    if campaign["capped"] and inp.amount.amount > left:
                        refusal = (f"exceeds_target: only {format_amount(left, cur)} {cur} "
                                   "until the campaign's target")
                if refusal:
                    return DonationResult("refused", error=refusal)
            donor = AccountRef("user_points" if cur == POINTS else "user_wallet", inp.user_id, cur)
            settings = (await session.execute(text(
                "SELECT settings FROM tenants WHERE id = :t"), {"t": inp.tenant_id})).scalar_one()
            rate = int(((settings or {}).get("donations") or {}).get("points_per_unit", 1))
            points = 0 if cur == POINTS else points_for(inp.amount.amount, cur, rate)
            transfers = [TransferRequest(key, donor, account, inp.amount.amount, cur, "donation",
                                         {"campaign_id": inp.campaign_id})]
            if points:
                transfers.append(TransferRequest(
                    f"{inp.flow_id}:donor-points", AccountRef("points_issuance", "tenant", POINTS),
                    AccountRef("user_points", inp.user_id, POINTS), points, POINTS,
                    "points_earned", {"campaign_id": inp.campaign_id}))
            try:
                await ledger.post(inp.tenant_id, inp.flow_id, transfers)
            except InsufficientFunds as e:
                raise ApplicationError(f"insufficient_funds: {e}", type="insufficient_funds",
                                       non_retryable=True) from e
            raised = next(b.posted for b in await ledger.balances(
                inp.tenant_id, inp.campaign_id, ("campaign",)) if b.currency == cur)
            closed = False
            if campaign["capped"] and raised >= campaign["target"]:
                closed = await close_campaign(session, inp.tenant_id, inp.campaign_id,
                                              "target_reached")
            await emit(session, inp.tenant_id, f"donation.completed:{inp.flow_id}",
                       "donation.completed", {"campaign_id": inp.campaign_id,
                                              "user_id": inp.user_id, "currency": cur,
                                              "amount": format_amount(inp.amount.amount, cur)})
        return DonationResult("completed", points=points, campaign_closed=closed)

    @activity.defn(name=CAMPAIGN_CLOSE)
    async def close(self, inp: CampaignInput) -> bool:
        async with self.sessions.begin() as session:
            return await close_campaign(session, inp.tenant_id, inp.campaign_id, "ended")
