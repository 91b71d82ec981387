"""Gateway-neutral payments, refunds and payouts: what a flow knows of a payment gateway."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.money import Money

PAYMENT_SUCCEEDED = "succeeded"
PAYMENT_FAILED = "failed"
PAYMENT_PENDING = "pending"
PAYMENT_CANCELED = "canceled"
# A canceled payment's failure_reason when the gateway let it expire (a Checkout Session): the
# flow ends "expired", as when its own expiry comes first.
PAYMENT_EXPIRED_REASON = "expired"
CREATE_PAYMENT = "gateway.create_payment"
RETRIEVE_PAYMENT = "gateway.retrieve_payment"
CANCEL_PAYMENT = "gateway.cancel_payment"
CREATE_REFUND = "gateway.create_refund"
RETRIEVE_REFUND = "gateway.retrieve_refund"
CREATE_PAYOUT = "gateway.create_payout"
RETRIEVE_PAYOUT = "gateway.retrieve_payout"
REVERSE_PAYOUT = "gateway.reverse_payout"
# A reversal's status when no money reached the payee (nothing to take back).
REVERSAL_NOTHING = "nothing_to_reverse"
PAYOUT_METHODS = ("bank_transfer", "mobile_money", "paypal", "crypto")
# The methods a payout provider serves (activities/gateways/payouts.py), and which one; a
# withdrawal by another method is refused at request time.
PAYOUT_PROVIDED = {"bank_transfer": "stripe_connect"}


@dataclass
class CreatePaymentRequest:
    tenant_id: str
    flow_id: str
    amount: Money
    description: str
    idempotency_key: str  # derived from the flow id: retries reuse it
    gateway: str = "stripe"
    # A hosted checkout (gateway "stripe_checkout"): the flow's expiry (unix seconds) and its
    # window (so its start is expires_at - expires_in_seconds), where the payer returns to;
    # None: the gateway's defaults.
    expires_at: int | None = None
    expires_in_seconds: int | None = None
    success_url: str | None = None
    cancel_url: str | None = None


@dataclass
class GatewayPayment:
    gateway: str
    payment_id: str
    status: str  # PAYMENT_* above
    amount: Money
    client_secret: str | None = None
    checkout_url: str | None = None
    failure_reason: str | None = None


@dataclass
class PaymentRef:
    gateway: str
    payment_id: str
    currency: str


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
class PayoutReversalRequest:
    """Take a failed payout's money back from the payee's account to the platform (Connect:
    reverse the transfer to the connected account). Idempotent on ``idempotency_key``."""

    tenant_id: str
    flow_id: str
    amount: Money
    method: str
    idempotency_key: str  # <flow id>:payout:reversal
    gateway: str = "stripe"


@dataclass
class PayoutReversal:
    gateway: str
    reversal_id: str | None  # None: nothing reversed
    status: str  # PAYMENT_SUCCEEDED / PAYMENT_FAILED (refused) / REVERSAL_NOTHING
    amount: Money  # what is back on the platform (0 when refused or nothing to reverse)
    failure_reason: str | None = None
