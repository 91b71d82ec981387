"""Order-payment flow: its input, status updates and what the API answers."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.gateway import CheckoutInfo
from contracts.money import Money

ORDER_RECORD = "orders.record_status"


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
    # a hosted checkout's return URLs (gateway "stripe_checkout"); None: the gateway's defaults
    success_url: str | None = None
    cancel_url: str | None = None


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
    error: str | None = None  # the failure's detail
    payment: CheckoutInfo | None = None
    error_code: str | None = None  # its ErrorCode value (contracts.errors)
