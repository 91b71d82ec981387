"""Withdrawal flow (maker-checker, then a payout)."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.money import Money

WITHDRAWAL_HOLD = "withdrawals.hold"
WITHDRAWAL_SETTLE = "withdrawals.settle"


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
