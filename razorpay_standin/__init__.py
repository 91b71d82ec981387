"""A local Razorpay-compatible stand-in (orders, payments, refunds, a checkout page, signed
webhooks, fault injection) that the official SDK talks to offline. See
`razorpay_standin.app` for the layout."""

from razorpay_standin.app import create_app
from razorpay_standin.config import RazorpayStandinConfig
from razorpay_standin.store import checkout_signature
from razorpay_standin.webhooks import sign_body

__all__ = ["RazorpayStandinConfig", "checkout_signature", "create_app", "sign_body"]
