"""Refund flow: its input, reservation, plan, settlement and the cashback clawback."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.money import Money

REFUND_RESERVE = "refunds.reserve"
REFUND_SETTLE = "refunds.settle"
REFUND_CLAWBACK = "refunds.clawback"


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
