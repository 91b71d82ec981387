"""A local Stripe-compatible stand-in (payment intents, signed webhooks, fault injection) that
the official SDK talks to offline. See `stripe_standin.app`."""

from stripe_standin.app import StandinConfig, create_app, sign_payload

__all__ = ["StandinConfig", "create_app", "sign_payload"]
