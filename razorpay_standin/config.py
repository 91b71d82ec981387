"""`RazorpayStandinConfig`: how one Razorpay stand-in app is set up (API key pair, webhook
target and secret, public URL, webhook retry timing, auto-processing of refunds)."""

from __future__ import annotations

from dataclasses import dataclass

DEV_KEY_ID = "rzp_test_walletflow"
DEV_KEY_SECRET = "rzp_secret_walletflow_standin"  # noqa: S105 - the stand-in's development key
DEV_WEBHOOK_SECRET = "rzp_whsec_walletflow_standin"  # noqa: S105


@dataclass
class RazorpayStandinConfig:
    key_id: str = DEV_KEY_ID
    key_secret: str = DEV_KEY_SECRET
    webhook_url: str | None = None
    webhook_secret: str | None = None
    public_url: str = "http://127.0.0.1:12112"
    account_id: str = "acc_walletflowstandin"
    webhook_retry_delays: tuple[float, ...] = (0.5, 1, 2, 4, 8)
    webhook_timeout_seconds: float = 10.0
    # Process every refund right after it is created (the create answer still says
    # "pending"; refund.processed follows), for the dev stack.
    auto_process_refunds: bool = False
