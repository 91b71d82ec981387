"""Campaigns and donations."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.money import Money

DONATION_TRANSFER = "donations.transfer"
DONATION_AWARD_POINTS = "donations.award_points"
CAMPAIGN_CLOSE = "campaigns.close"


@dataclass
class CampaignInput:
    tenant_id: str
    campaign_id: str
    flow_id: str
    ends_at: str  # ISO 8601


@dataclass
class DonationInput:
    tenant_id: str
    flow_id: str
    campaign_id: str
    campaign_flow_id: str
    user_id: str
    amount: Money


@dataclass
class DonationResult:
    state: str  # "completed" | "refused"
    points: int = 0
    campaign_closed: bool = False
    error: str | None = None  # the refusal's detail
    error_code: str | None = None  # the refusal's ErrorCode value


@dataclass
class DonationMoved:
    """The donor → campaign transfer is written; ``campaign_closed``: it reached the capped
    target, and the campaign was closed in the same transaction."""

    campaign_closed: bool = False
