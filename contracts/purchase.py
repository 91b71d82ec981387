"""Purchase-credit (cashback) flow: its input, the evaluation, store events and ledger steps."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.money import Money

PURCHASE_EVALUATE = "purchases.evaluate"
PURCHASE_APPLY = "purchases.apply_step"


@dataclass
class PurchaseInput:
    tenant_id: str
    flow_id: str
    store_order_id: str
    user_id: str
    amount: Money
    platform: str
    occurred_at: str  # ISO 8601, when the store says the order was placed
    email: str | None = None
    shop: str | None = None
    session_id: str | None = None


@dataclass
class PurchaseEvaluation:
    method: str  # session_match / time_proximity / email_match / no_match
    confidence: str  # "0.95"
    tier: str
    rate: str  # base rate + tier bonus, e.g. "0.11"
    cashback: int
    points: int
    points_per_unit: int
    return_window_seconds: int
    eligible: bool


@dataclass
class StoreEvent:
    """The store reports a cancellation or a refund (deduplicated on event_id)."""

    event_id: str
    kind: str  # "cancelled" | "refunded"
    refund: Money | None = None  # this refund's amount (refunds add up)
    refunded_total: Money | None = None  # or: the order's cumulative refunded amount


@dataclass
class PurchaseStep:
    """One ledger step of a purchase and its new state, applied in one DB transaction: void a
    hold, post a hold, place a new hold, credit points — in that order."""

    tenant_id: str
    flow_id: str
    store_order_id: str
    user_id: str
    currency: str
    state: str
    void_key: str | None = None
    post_key: str | None = None
    hold_key: str | None = None
    hold_amount: int = 0
    points: int = 0
    refunded: int = 0
    release_at: str | None = None
