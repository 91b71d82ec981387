"""A local Stripe-compatible stand-in (payment intents, refunds, payouts, signed webhooks, fault
injection) that the official SDK talks to offline. See `stripe_standin.app` for the layout."""

from stripe_standin.app import create_app
from stripe_standin.config import StandinConfig
from stripe_standin.webhooks import sign_payload

__all__ = ["StandinConfig", "create_app", "sign_payload"]
