"""`StandinConfig`: how one stand-in app is set up (webhook target and secrets, API key prefix,
public URL, state file, webhook retry timing, auto-resolution of refunds and payouts)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StandinConfig:
    webhook_url: str | None = None
    # The first is current; with several, every delivery carries one v1= signature per secret.
    webhook_secrets: list[str] = field(default_factory=list)
    api_key_prefix: str = "sk_"
    public_url: str = "http://127.0.0.1:12111"
    state_file: str | None = None
    webhook_retry_delays: tuple[float, ...] = (0.5, 1, 2, 4, 8)
    webhook_timeout_seconds: float = 10.0
    # Resolve every refund as succeeded right after it is created (the create answer still
    # says "pending"; refund.updated and charge.refunded follow), for the dev stack.
    auto_succeed_refunds: bool = False
    # Mark every payout paid right after it is created (the create answer still says "pending";
    # payout.updated and payout.paid follow), for the dev stack.
    auto_pay_payouts: bool = False
