"""Top-up flow: its input and result."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.money import Money


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
    # a hosted checkout's return URLs (gateway "stripe_checkout"); None: the gateway's defaults
    success_url: str | None = None
    cancel_url: str | None = None


@dataclass
class TopUpResult:
    flow_id: str
    state: str  # completed / failed / expired
    payment_id: str | None
    credited: Money | None
    error: str | None = None  # the failure's detail
    error_code: str | None = None  # its ErrorCode value (contracts.errors)
