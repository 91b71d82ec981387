"""Response models of the store, webhook, settings, analytics and health operations (the flow
and wallet ones are in api/views.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.views import Dec

# -- purchases, stores, webhooks in ------------------------------------------------------------


class PurchaseAccepted(BaseModel):
    flow_id: str
    order_id: str
    duplicate: bool = Field(description="the order was already reported (200)")
    status_url: str


class StoreEventOutcome(BaseModel):
    order_id: str
    outcome: str = Field(examples=["signalled", "flow_closed_or_unknown"])


class StoreView(BaseModel):
    store_id: str
    platform: Literal["widget", "shopify", "woocommerce"]
    public_key: str
    created_at: str


class StoreCredentialView(StoreView):
    secret: str = Field(description="answered only when it is set (connected or rotated)")


class DeletedView(BaseModel):
    id: str
    deleted: Literal[True]


class StoreList(BaseModel):
    data: list[StoreView]
    next_cursor: str | None


class InteractionView(BaseModel):
    interaction_id: int


class WebhookAck(BaseModel):
    received: bool
    duplicate: bool | None = None
    outcome: str | None = None
    detail: str | None = None  # why an event was not signalled (ignored_mismatch)


# -- outbound webhooks -------------------------------------------------------------------------


class EndpointView(BaseModel):
    id: str
    url: str
    event_types: list[str]
    disabled_at: str | None
    disabled_reason: str | None
    created_at: str
    secret: str | None = Field(default=None, description="only when created or rotated")


class EndpointList(BaseModel):
    data: list[EndpointView]
    next_cursor: str | None


class DeliveryAttempt(BaseModel):
    at: str
    status_code: int | None
    error: str | None


class DeliveryView(BaseModel):
    id: str
    endpoint_id: str
    event_type: str
    status: str
    attempts: list[DeliveryAttempt]
    delivered_at: str | None


class DeliveryList(BaseModel):
    data: list[DeliveryView]
    next_cursor: str | None


class ResendView(BaseModel):
    id: str
    status: str


# -- settings, analytics, health ---------------------------------------------------------------


class RewardsPolicyView(BaseModel):
    cashback_rate: str
    return_window_seconds: int
    min_confidence: str
    points_per_unit: int
    tier_thresholds: dict[str, int]
    tier_bonus: dict[str, str]


class PeriodView(BaseModel):
    from_: str = Field(alias="from")
    to: str


class CountView(BaseModel):
    count: int
    unique_users: int | None = None
    attributed: int | None = None


class BucketView(BaseModel):
    order_value: Dec
    count: int


class CashbackFigures(BaseModel):
    pending: Dec
    available: Dec
    reversed: Dec


class CurrencyFiguresView(BaseModel):
    currency: str
    purchases: int
    order_value: Dec
    average_order_value: Dec
    refunded: Dec
    cashback: CashbackFigures
    points_earned: str
    points_pending: str
    by_platform: dict[str, BucketView]
    by_attribution: dict[str, BucketView]


class TopUser(BaseModel):
    user_id: str
    order_value: Dec
    purchases: int


class LifetimeValueView(BaseModel):
    currency: str
    purchasing_users: int
    total_order_value: Dec
    average_per_user: Dec
    top_users: list[TopUser]


class AnalyticsView(BaseModel):
    period: PeriodView
    currency: str | None
    interactions: CountView
    purchases: CountView
    conversion_rate: str
    currencies: list[CurrencyFiguresView]
    lifetime_value: list[LifetimeValueView]


class HealthView(BaseModel):
    status: str


class ReadinessView(BaseModel):
    status: Literal["ready", "unready"]
    checks: dict[str, str]
