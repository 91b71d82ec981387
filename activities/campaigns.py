"""Campaign and donation activities, one database transaction each. The donor → campaign
transfer locks the campaign row, so concurrent donations around a capped target never
overshoot it, and the donation that reaches a capped target closes the campaign in the same
transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.refusals import ledger_refused, refused
from contracts.donation import (
    CAMPAIGN_CLOSE,
    DONATION_AWARD_POINTS,
    DONATION_TRANSFER,
    CampaignInput,
    DonationInput,
    DonationMoved,
)
from contracts.errors import ErrorCode
from contracts.ledger import AccountRef, TransferRequest
from contracts.money import POINTS, Money
from contracts.rewards import points_for
from db.campaigns import CampaignRepository
from db.ledger import LedgerError, LedgerRepository
from db.tenants import TenantRepository


def _refusal(campaign: dict[str, Any], raised: int, amount: Money) -> ApplicationError | None:
    """Why the campaign cannot take this donation now, if it cannot."""
    if campaign["status"] != "open":
        return refused(ErrorCode.CAMPAIGN_CLOSED,
                       f"the campaign is closed ({campaign['closed_reason']})")
    if campaign["ends_at"] <= datetime.now(UTC):
        return refused(ErrorCode.CAMPAIGN_CLOSED, "the campaign has ended")
    left = campaign["target"] - raised
    if campaign["capped"] and amount.amount > left:
        return refused(ErrorCode.EXCEEDS_TARGET,
                       f"only {Money(left, amount.currency)} until the campaign's target")
    return None


class CampaignActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @activity.defn(name=DONATION_TRANSFER)
    async def transfer(self, inp: DonationInput) -> DonationMoved:
        """Lock the campaign, check it can take the donation, move donor → campaign, and close
        the campaign if this reached its capped target. A retry after a commit finds the
        transfer written and skips the checks (the campaign may be closed by now)."""
        key, cur = f"{inp.flow_id}:donation", inp.amount.currency
        donor = AccountRef("user_points" if cur == POINTS else "user_wallet", inp.user_id, cur)
        account = AccountRef("campaign", inp.campaign_id, cur)
        async with self.sessions.begin() as session:
            ledger, campaigns = LedgerRepository(session), CampaignRepository(session)
            done = await ledger.transfer_exists(inp.tenant_id, key)
            campaign = await campaigns.lock(inp.tenant_id, inp.campaign_id)
            raised = await ledger.posted_balance(inp.tenant_id, "campaign", inp.campaign_id, cur)
            refusal = None if done else _refusal(campaign, raised, inp.amount)
            if refusal is not None:
                raise refusal
            try:
                await ledger.post(inp.tenant_id, inp.flow_id, [TransferRequest(
                    key, donor, account, inp.amount.amount, cur, "donation",
                    {"campaign_id": inp.campaign_id})])
            except LedgerError as e:
                raise ledger_refused(e) from e
            raised = await ledger.posted_balance(inp.tenant_id, "campaign", inp.campaign_id, cur)
            reached = bool(campaign["capped"]) and raised >= campaign["target"]
            if reached:
                await campaigns.close(inp.tenant_id, inp.campaign_id, "target_reached")
        return DonationMoved(campaign_closed=reached)

    @activity.defn(name=DONATION_AWARD_POINTS)
    async def award_points(self, inp: DonationInput) -> int:
        """The donor's points for a money donation (``donations.points_per_unit`` per whole
        unit, default 1); a points donation earns none."""
        cur = inp.amount.currency
        if cur == POINTS:
            return 0
        async with self.sessions.begin() as session:
            settings = await TenantRepository(session).settings(inp.tenant_id)
            rate = int((settings.get("donations") or {}).get("points_per_unit", 1))
            points = points_for(inp.amount.amount, cur, rate)
            award = TransferRequest(
                f"{inp.flow_id}:donor-points", AccountRef("points_issuance", "tenant", POINTS),
                AccountRef("user_points", inp.user_id, POINTS), points, POINTS, "points_earned",
                {"campaign_id": inp.campaign_id})
            try:
                if points:
                    await LedgerRepository(session).post(inp.tenant_id, inp.flow_id, [award])
            except LedgerError as e:
                raise ledger_refused(e) from e
        return points

    @activity.defn(name=CAMPAIGN_CLOSE)
    async def close(self, inp: CampaignInput) -> bool:
        async with self.sessions.begin() as session:
            return await CampaignRepository(session).close(inp.tenant_id, inp.campaign_id,
                                                           "ended")
