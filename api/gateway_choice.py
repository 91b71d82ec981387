"""Which gateway a payment goes through: the one the request names, else the tenant's default
(``payments.gateway`` in its settings), else Stripe; it must be one this service is configured
with (``Settings.payment_gateways``), or the request is refused (422 ``unknown_gateway``).
What a client needs to pay through Razorpay's checkout.js travels with the checkout answer."""

from __future__ import annotations

from typing import Any

from api.errors import ProblemError
from contracts.errors import ErrorCode as E
from contracts.gateway import CheckoutInfo
from contracts.money import Money, format_amount
from contracts.settings import default_gateway
from db.tenants import Principal
from settings import Settings


def choose_gateway(settings: Settings, principal: Principal, requested: str | None) -> str:
    name = requested or default_gateway(principal.settings or {})
    if name not in settings.payment_gateways:
        raise ProblemError(E.UNKNOWN_GATEWAY, f"gateway {name!r} is not configured here: one of "
                           f"{', '.join(settings.payment_gateways)}")
    return name


def payment_answer(settings: Settings, checkout: CheckoutInfo, charge: Money,
                   verify_url: str | None = None) -> dict[str, Any]:
    """The answer's ``payment``; for Razorpay also what checkout.js is opened with."""
    answer: dict[str, Any] = {"gateway": checkout.gateway, "payment_id": checkout.payment_id,
                              "client_secret": checkout.client_secret,
                              "checkout_url": checkout.checkout_url}
    if checkout.gateway == "razorpay":
        answer["razorpay"] = {
            "key_id": settings.razorpay_key_id or "", "order_id": checkout.payment_id,
            "amount": charge.amount, "currency": charge.currency,
            "display_amount": format_amount(charge.amount, charge.currency),
            **({"verify_url": verify_url} if verify_url else {})}
    return answer
