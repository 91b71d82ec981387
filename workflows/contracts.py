"""Contract types shared by the API, the workflows and the activities.

Stdlib only (dataclasses, decimal), so the Temporal sandbox can import it and the default
data converter can (de)serialise it. Money is always an integer number of minor units plus an
ISO-4217 code; points are the currency ``PTS`` with no decimals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

# Minor-unit exponents of the currencies the service accepts. PTS = loyalty points.
CURRENCY_EXPONENTS: dict[str, int] = {
    "EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "SEK": 2, "NOK": 2, "DKK": 2,
    "PLN": 2, "CZK": 2, "INR": 2, "BRL": 2, "MXN": 2, "SGD": 2, "HKD": 2, "NZD": 2, "ZAR": 2,
    "KES": 2, "NGN": 2, "JPY": 0, "KRW": 0, "PTS": 0,
}
POINTS = "PTS"
_DECIMAL_RE = re.compile(r"^-?[0-9]{1,24}(\.[0-9]{1,24})?$")
# Largest amount one request may move, in minor units (10 billion in a 2-decimal currency).
MAX_MINOR_UNITS = 10**12


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


def currency_exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise MoneyError(f"unknown currency {currency!r}") from None


def parse_amount(value: str | int | Decimal, currency: str) -> int:
    """Parse a decimal amount ("89.50", 89.5 parsed exactly, 89) into minor units.

    Rejects zero, negatives, NaN/infinities, more decimals than the currency has and absurd
    magnitudes. Floats are refused: callers must parse JSON numbers as Decimal.
    """
    exponent = currency_exponent(currency)
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError("amount must be a decimal string or an exact number")
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_RE.match(text):
            raise MoneyError(f"amount {value[:40]!r} is not a decimal number like \"12.50\"")
        try:
            value = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
            raise MoneyError(f"amount {value!r} is not a decimal number") from None
    elif isinstance(value, int):
        value = Decimal(value)
    if not value.is_finite():
        raise MoneyError("amount must be a finite number")
    if value <= 0:
        raise MoneyError("amount must be greater than zero")
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise MoneyError(f"{currency} allows at most {exponent} decimal places")
    units = int(minor)
    if units > MAX_MINOR_UNITS:
        raise MoneyError("amount is too large")
    return units


def format_amount(minor_units: int, currency: str) -> str:
    """Minor units → decimal string with exactly the currency's decimals (895, EUR → "8.95")."""
    exponent = currency_exponent(currency)
    return f"{Decimal(minor_units).scaleb(-exponent):.{exponent}f}"


def round_half_up(value: Decimal) -> int:
    """Round a Decimal to an integer, halves away from zero (money rounding)."""
    return int(value.quantize(Decimal(1), rounding="ROUND_HALF_UP"))


@dataclass(frozen=True)
class Money:
    amount: int  # minor units
    currency: str

    def __str__(self) -> str:
        return f"{format_amount(self.amount, self.currency)} {self.currency}"


# ---------------------------------------------------------------------------------------------
# Gateway-neutral results
# ---------------------------------------------------------------------------------------------

PAYMENT_SUCCEEDED = "succeeded"
PAYMENT_FAILED = "failed"
PAYMENT_PENDING = "pending"
PAYMENT_CANCELED = "canceled"


@dataclass
class CreatePaymentRequest:
    tenant_id: str
    flow_id: str
    amount: Money
    description: str
    idempotency_key: str  # derived from the flow id: retries reuse it
    gateway: str = "stripe"


@dataclass
class GatewayPayment:
    gateway: str
    payment_id: str
    status: str  # PAYMENT_* above
    amount: Money
    client_secret: str | None = None
    checkout_url: str | None = None
    failure_reason: str | None = None


# ---------------------------------------------------------------------------------------------
# Ledger requests
# ---------------------------------------------------------------------------------------------


@dataclass
class AccountRef:
    kind: str  # user_wallet, user_points, gateway_clearing, merchant_revenue, points_issuance, ...
    owner_id: str  # user id for user accounts, gateway name or "tenant" for system accounts
    currency: str


@dataclass
class TransferRequest:
    idempotency_key: str  # "<flow id>:<step>[:<currency>]"
    debit: AccountRef
    credit: AccountRef
    amount: int
    currency: str
    kind: str  # business kind: topup, points_purchase, ...
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class PostTransfersRequest:
    """Several transfers written in one database transaction (all or nothing)."""

    tenant_id: str
    flow_id: str
    transfers: list[TransferRequest]
    pending: bool = False  # holds (two-phase) instead of posted transfers
    # business events recorded in the same transaction as the money movement (the outbox)
    events: list[EventOut] = field(default_factory=list)


@dataclass
class PostedTransfer:
    transfer_id: int
    idempotency_key: str
    state: str
    replayed: bool


# ---------------------------------------------------------------------------------------------
# Top-up flow
# ---------------------------------------------------------------------------------------------


@dataclass
class TopUpInput:
    tenant_id: str
    user_id: str
    flow_id: str
    charge: Money  # what the user pays through the gateway
    credit: Money  # what lands in the wallet (== charge, or PTS for a points package)
    package: str | None = None
    expires_in_seconds: int = 1800
    gateway: str = "stripe"


@dataclass
class PaymentEvent:
    """A gateway webhook, verified and translated by the API, signalled to the flow."""

    event_id: str
    payment_id: str
    status: str  # PAYMENT_SUCCEEDED / PAYMENT_FAILED / PAYMENT_CANCELED
    amount: Money | None = None
    failure_reason: str | None = None


@dataclass
class CheckoutInfo:
    """What the API answers the client with, so it can pay."""

    flow_id: str
    gateway: str
    payment_id: str
    client_secret: str | None
    checkout_url: str | None
    expires_at: str  # ISO 8601


@dataclass
class FlowStep:
    name: str
    at: str  # ISO 8601


@dataclass
class FlowStatus:
    flow_id: str
    kind: str
    state: str
    tenant_id: str
    user_id: str
    amounts: dict[str, str]
    steps: list[FlowStep]
    created_at: str
    updated_at: str
    error: str | None = None
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class TopUpResult:
    flow_id: str
    state: str  # completed / failed / expired
    payment_id: str | None
    credited: Money | None
    error: str | None = None


# ---------------------------------------------------------------------------------------------
# Activity names (workflows call activities by name, so they never import SQLAlchemy/Stripe)
# ---------------------------------------------------------------------------------------------

POST_TRANSFERS = "ledger.post_transfers"
CREATE_PAYMENT = "gateway.create_payment"
RETRIEVE_PAYMENT = "gateway.retrieve_payment"
CANCEL_PAYMENT = "gateway.cancel_payment"


@dataclass
class PaymentRef:
    gateway: str
    payment_id: str
    currency: str


# ---------------------------------------------------------------------------------------------
# Purchase-credit (cashback) flow
# ---------------------------------------------------------------------------------------------

PURCHASE_EVALUATE = "purchases.evaluate"
PURCHASE_APPLY = "purchases.apply_step"

PLATFORMS = ("widget", "shopify", "woocommerce", "api")
TIERS = ("bronze", "silver", "gold", "platinum")


@dataclass
class RewardsPolicy:
    """A tenant's cashback and points rules (tenants.settings["rewards"] overrides these)."""

    cashback_rate: str = "0.10"
    return_window_seconds: int = 30 * 86400
    min_confidence: str = "0"  # any tracked purchase earns (seed 000)
    points_per_unit: int = 1  # points per whole currency unit spent
    tier_thresholds: dict[str, int] = field(
        default_factory=lambda: {"silver": 1000, "gold": 5000, "platinum": 20000})
    tier_bonus: dict[str, str] = field(
        default_factory=lambda: {"bronze": "0", "silver": "0.01", "gold": "0.02",
                                 "platinum": "0.03"})

    def tier_for(self, lifetime_points: int) -> str:
        tier = "bronze"
        for name in TIERS[1:]:
            if lifetime_points >= self.tier_thresholds.get(name, 1 << 62):
                tier = name
        return tier


def cashback_for(amount_minor: int, rate: str) -> int:
    """amount × rate, rounded half-up to the minor unit (€89.50 × 10% = €8.95)."""
    return round_half_up(Decimal(amount_minor) * Decimal(rate))


def points_for(amount_minor: int, currency: str, points_per_unit: int) -> int:
    """Points for whole currency units spent (€89.50 at 1 point/€ = 89 points)."""
    return amount_minor // 10 ** currency_exponent(currency) * points_per_unit


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


# ---------------------------------------------------------------------------------------------
# Order-payment flow
# ---------------------------------------------------------------------------------------------

RESOLVE_TRANSFERS = "ledger.resolve_transfers"
ORDER_RECORD = "orders.record_status"


@dataclass
class ResolveTransfersRequest:
    """Post or void pending transfers (holds), all in one database transaction."""

    tenant_id: str
    keys: list[str]
    outcome: str  # "posted" | "voided"


@dataclass
class OrderPaymentInput:
    tenant_id: str
    flow_id: str
    order_id: str
    user_id: str
    amount: Money  # the order's total
    method: str  # wallet / points / card / split
    wallet_amount: int = 0  # money held from the wallet (wallet, split)
    card_amount: int = 0  # charged through the gateway (card, split)
    points: int = 0  # PTS held from the user's points (points)
    expires_in_seconds: int = 1800
    gateway: str = "stripe"


@dataclass
class OrderStatusUpdate:
    tenant_id: str
    order_id: str
    status: str
    error: str | None = None
    payment_id: str | None = None


@dataclass
class OrderView:
    """What the API answers: the order's state and, for a card part, how to pay it."""

    flow_id: str
    order_id: str
    state: str
    error: str | None = None
    payment: CheckoutInfo | None = None


# ---------------------------------------------------------------------------------------------
# Refund flow
# ---------------------------------------------------------------------------------------------

REFUND_RESERVE = "refunds.reserve"
REFUND_SETTLE = "refunds.settle"
REFUND_CLAWBACK = "refunds.clawback"
CREATE_REFUND = "gateway.create_refund"
RETRIEVE_REFUND = "gateway.retrieve_refund"


@dataclass
class RefundInput:
    tenant_id: str
    flow_id: str
    order_id: str
    order_flow_id: str
    user_id: str
    amount: Money
    destination: str  # "wallet" | "original"
    requested_by: str
    needs_approval: bool = False
    admins: list[str] = field(default_factory=list)  # who may approve (tenant's admin keys)
    approval_window_seconds: int = 7 * 86400
    gateway_wait_seconds: int = 3 * 86400


@dataclass
class RefundPlan:
    """How a reserved refund is paid back: to the wallet/points, and/or through the gateway."""

    wallet: int = 0  # to user_wallet (money) or user_points (PTS orders)
    card: int = 0  # through the gateway
    payment_id: str | None = None
    gateway: str = "stripe"


@dataclass
class RefundReservation:
    tenant_id: str
    flow_id: str
    order_id: str
    amount: int
    destination: str


@dataclass
class RefundSettlement:
    """Book a done refund ("refunded"), give a failed one's reserved capacity back
    ("released"), or only record how a refund that reserved nothing ended ("closed")."""

    tenant_id: str
    flow_id: str
    order_id: str
    user_id: str
    currency: str
    outcome: str  # "refunded" | "released" | "closed"
    wallet: int = 0
    card: int = 0
    reserved: int = 0
    gateway: str = "stripe"
    status: str = ""
    error: str | None = None


@dataclass
class CreateRefundRequest:
    tenant_id: str
    flow_id: str
    payment_id: str
    amount: Money
    idempotency_key: str
    gateway: str = "stripe"


@dataclass
class GatewayRefund:
    gateway: str
    refund_id: str
    status: str  # PAYMENT_SUCCEEDED / PAYMENT_FAILED / PAYMENT_PENDING
    amount: Money
    failure_reason: str | None = None


@dataclass
class RefundRef:
    gateway: str
    refund_id: str


@dataclass
class RefundEvent:
    """A verified gateway webhook about a refund (deduplicated on event_id)."""

    event_id: str
    refund_id: str
    status: str
    failure_reason: str | None = None


@dataclass
class ApprovalDecision:
    """An admin's decision. From the API the admin comes from the admin key; from the Temporal
    UI or `temporal workflow signal` it is named here and checked against the tenant's admins."""

    admin: str
    approve: bool
    decision_id: str = ""
    reason: str | None = None


@dataclass
class ClawbackRequest:
    tenant_id: str
    flow_id: str
    order_id: str
    refund: Money


@dataclass
class ClawbackResult:
    action: str  # "none" | "signal_purchase" | "clawed_back" | "insufficient_funds"
    purchase_flow_id: str | None = None
    amount: int = 0


# ---------------------------------------------------------------------------------------------
# Campaigns and donations
# ---------------------------------------------------------------------------------------------

DONATE = "donations.donate"
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
    error: str | None = None


# ---------------------------------------------------------------------------------------------
# Withdrawals
# ---------------------------------------------------------------------------------------------

WITHDRAWAL_HOLD = "withdrawals.hold"
WITHDRAWAL_SETTLE = "withdrawals.settle"
CREATE_PAYOUT = "gateway.create_payout"
RETRIEVE_PAYOUT = "gateway.retrieve_payout"
PAYOUT_METHODS = ("bank_transfer", "mobile_money", "paypal", "crypto")


@dataclass
class WithdrawalInput:
    tenant_id: str
    flow_id: str
    user_id: str
    amount: Money
    method: str  # bank_transfer / mobile_money / paypal / crypto
    destination: str
    requested_by: str
    approvals_required: int = 1
    admins: list[str] = field(default_factory=list)
    approval_window_seconds: int = 72 * 3600
    payout_wait_seconds: int = 3 * 86400
    daily_max: int | None = None
    gateway: str = "stripe"


@dataclass
class WithdrawalStep:
    """Hold the funds (checking the daily limit), or post/void the hold, with the new status."""

    tenant_id: str
    flow_id: str
    user_id: str
    amount: Money
    action: str  # "hold" | "post" | "void" | "none"
    status: str
    daily_max: int | None = None
    payout_id: str | None = None
    error: str | None = None


@dataclass
class PayoutRequest:
    tenant_id: str
    flow_id: str
    amount: Money
    method: str
    destination: str
    idempotency_key: str
    gateway: str = "stripe"


@dataclass
class GatewayPayout:
    gateway: str
    payout_id: str
    status: str  # PAYMENT_SUCCEEDED (paid) / PAYMENT_FAILED / PAYMENT_PENDING
    amount: Money
    failure_reason: str | None = None


@dataclass
class PayoutRef:
    gateway: str
    payout_id: str


@dataclass
class PayoutEvent:
    event_id: str
    payout_id: str
    status: str
    failure_reason: str | None = None


@dataclass
class DecisionRecord:
    admin: str
    approve: bool
    at: str
    note: str | None
    via: str  # "update" (API / CLI) or "signal" (Temporal UI / temporal workflow signal)


# ---------------------------------------------------------------------------------------------
# Outbound webhooks
# ---------------------------------------------------------------------------------------------

DELIVER_WEBHOOK = "webhooks.deliver"


@dataclass
class DeliveryInput:
    delivery_id: str  # also the webhook-id header, stable across retries and resends
    tenant_id: str
GIVE_UP_WEBHOOK = "webhooks.give_up"
EMIT_EVENT = "events.emit"


@dataclass
class EventOut:
    """A business event for the tenant's webhook endpoints (recorded once per key)."""

    tenant_id: str
    key: str
    type: str
    payload: dict[str, str]
