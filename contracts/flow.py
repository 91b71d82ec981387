"""What every flow reports of itself: its status and the steps it has taken."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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
    error: str | None = None  # the failure's detail, for people
    details: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None  # an ErrorCode value (contracts.errors), for programs


class FlowState(StrEnum):
    """Every state a flow reports (its `status` query), running or final, by flow kind."""

    # -- several kinds --------------------------------------------------------------------------
    REQUESTED = "requested"  # refund, withdrawal: received, not yet checked
    AWAITING_APPROVAL = "awaiting_approval"  # refund, withdrawal: an admin decides
    AWAITING_PAYMENT = "awaiting_payment"  # top-up, order: the payer pays at the gateway
    PROCESSING = "processing"  # order, refund: moving money
    PENDING = "pending"  # order: started; purchase: cashback held through the return window
    FAILED = "failed"  # top-up, order, refund (final)
    EXPIRED = "expired"  # top-up, refund, withdrawal: no payment / no decision in time (final)
    REJECTED = "rejected"  # refund, withdrawal: an admin said no (final)
    REFUSED = "refused"  # refund, withdrawal, donation: a business rule said no (final)
    # -- top-up ---------------------------------------------------------------------------------
    CREATED = "created"
    CREDITING = "crediting"
    COMPLETED = "completed"  # also a donation (final)
    # -- order ----------------------------------------------------------------------------------
    PAID = "paid"  # also a withdrawal paid out (final)
    # -- refund ---------------------------------------------------------------------------------
    AWAITING_GATEWAY = "awaiting_gateway"
    REFUNDED = "refunded"
    # -- withdrawal -----------------------------------------------------------------------------
    PAYING_OUT = "paying_out"
    PAYOUT_FAILED = "payout_failed"
    # -- purchase -------------------------------------------------------------------------------
    RECEIVED = "received"
    AVAILABLE = "available"
    REVERSED = "reversed"
    NOT_ELIGIBLE = "not_eligible"
    # -- campaign -------------------------------------------------------------------------------
    OPEN = "open"
    ENDED = "ended"
    TARGET_REACHED = "target_reached"
    # -- past the workflow history's retention: only the database's record is left -------------
    ARCHIVED = "archived"
