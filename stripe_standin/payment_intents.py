"""PaymentIntents as Stripe has them: parameter validation, the object's wire shape and its status
transitions (cancel through the API; succeed or fail through the control API or checkout page).

Functions here take the `Store` and mutate its dicts; callers hold the app's lock."""

from __future__ import annotations

import copy
from typing import Any

from stripe_standin.params import (
    amount_param,
    bool_param,
    choice_param,
    currency_param,
    metadata_param,
)
from stripe_standin.store import Store
from stripe_standin.wire import JSON, StandinError, new_id, now, random_alnum

CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
              "requires_action", "processing")
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
CARD_DECLINED = {"code": "card_declined", "decline_code": "generic_decline",
                 "message": "Your card was declined.", "type": "card_error"}


def create(store: Store, params: JSON) -> JSON:
    """A new payment intent in ``requires_payment_method``."""
    amount = amount_param(params)
    currency = currency_param(params)
    metadata = metadata_param(params.get("metadata"))
    description = params.get("description")
    if description is not None and not isinstance(description, str):
        raise StandinError.invalid("Invalid string", code="parameter_invalid",
                                   param="description")
    automatic = _automatic_payment_methods(params)
    types = _payment_method_types(params)
    pi_id = new_id("pi")
    pi: JSON = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": 0,
        "automatic_payment_methods": automatic,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{pi_id}_secret_{random_alnum(25)}",
        "confirmation_method": "automatic",
        "created": now(),
        "currency": currency,
        "customer": None,
        "description": description,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": metadata,
        "next_action": None,
        "payment_method": None,
        "payment_method_types": types,
        "receipt_email": None,
        "status": "requires_payment_method",
    }
    store.payment_intents[pi_id] = pi
    return pi


def _automatic_payment_methods(params: JSON) -> JSON | None:
    raw = params.get("automatic_payment_methods")
    if raw is None:
        return None
    if not isinstance(raw, dict) or "enabled" not in raw:
        raise StandinError.invalid(
            "Missing required param: automatic_payment_methods[enabled].",
            code="parameter_missing", param="automatic_payment_methods[enabled]")
    return {"allow_redirects": "always",
            "enabled": bool_param(raw["enabled"], "automatic_payment_methods[enabled]")}


def _payment_method_types(params: JSON) -> list[str]:
    types: Any = params.get("payment_method_types", ["card"])
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise StandinError.invalid("Invalid array", code="parameter_invalid",
                                   param="payment_method_types")
    return list(types)


def cancel(store: Store, pi_id: str, params: JSON) -> JSON:
    pi = store.get_payment_intent(pi_id)
    reason = choice_param(params, "cancellation_reason", CANCELLATION_REASONS)
    if pi["status"] not in CANCELABLE:
        raise StandinError(
            400, "invalid_request_error",
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. "
            "Only a PaymentIntent with one of the following statuses may be canceled: "
            f"{', '.join(CANCELABLE)}.",
            code="payment_intent_unexpected_state",
            extra={"payment_intent": copy.deepcopy(pi)}, replayable=True)
    pi.update(status="canceled", canceled_at=now(), cancellation_reason=reason)
    return pi


def _require_open(pi: JSON, action: str) -> None:
    if pi["status"] in ("succeeded", "canceled"):
        raise StandinError(409, "invalid_request_error",
                           f"Cannot {action} payment intent {pi['id']}: it is {pi['status']}.",
                           code="payment_intent_unexpected_state")


def succeed(store: Store, pi_id: str) -> JSON:
    pi = store.get_payment_intent(pi_id)
    _require_open(pi, "succeed")
    pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None,
              latest_charge=new_id("ch"), payment_method=new_id("pm"))
    return pi


def fail(store: Store, pi_id: str) -> JSON:
    pi = store.get_payment_intent(pi_id)
    _require_open(pi, "fail")
    pi.update(status="requires_payment_method", latest_charge=new_id("ch"), payment_method=None,
              last_payment_error=dict(CARD_DECLINED))
    return pi


def flow_id_of(store: Store, pi_id: Any) -> str | None:
    """The ``metadata.flow_id`` of payment intent ``pi_id`` (None when unknown or not a string)."""
    target = store.payment_intents.get(pi_id) if isinstance(pi_id, str) else None
    return (target or {}).get("metadata", {}).get("flow_id")
