"""Refunds and the Charge behind a payment as Stripe has them: parameter and state checks on
create (what is left to refund, amounts in human form), the refund's wire shape, resolving a
pending refund, and the Charge object that ``charge.refunded`` carries.

Functions here take the `Store` and mutate its dicts; callers hold the app's lock."""

from __future__ import annotations

import copy
from typing import Literal

from stripe_standin.params import MIN_AMOUNT, choice_param, int_param, metadata_param
from stripe_standin.store import Store
from stripe_standin.wire import JSON, StandinError, format_amount, new_id, now

REASONS = ("duplicate", "fraudulent", "requested_by_customer")
# Refunds in these states no longer hold any of the charge's amount.
RELEASED = ("failed", "canceled")
FAILURE_REASON = "expired_or_canceled_card"


def refundable(store: Store, pi: JSON) -> int:
    """What is left to refund: received minus refunds that are pending or succeeded."""
    held = sum(r["amount"] for r in store.refunds_of(pi["id"]) if r["status"] not in RELEASED)
    return int(pi["amount_received"]) - held


def create(store: Store, params: JSON) -> JSON:
    """A ``pending`` refund of (part of) a succeeded payment intent's charge."""
    pi_id = _payment_intent_param(params)
    amount: int | None = None
    if "amount" in params:
        amount = int_param(params, "amount")
        if amount < MIN_AMOUNT:
            raise StandinError.invalid("Invalid positive integer",
                                       code="parameter_invalid_integer", param="amount")
    reason = choice_param(params, "reason", REASONS, blank_is_unset=True)
    metadata = metadata_param(params.get("metadata"))
    pi = store.payment_intents.get(pi_id)
    if pi is None:  # a missing object named in a parameter is a 400, as with Stripe
        raise StandinError.invalid(f"No such payment_intent: '{pi_id}'",
                                   code="resource_missing", param="payment_intent")
    amount = _checked_amount(store, pi, amount)
    refund: JSON = {
        "id": new_id("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": None,
        "charge": pi["latest_charge"],
        "created": now(),
        "currency": pi["currency"],
        "destination_details": None,
        "failure_reason": None,
        "metadata": metadata,
        "payment_intent": pi_id,
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "pending",
        "transfer_reversal": None,
    }
    store.refunds[refund["id"]] = refund
    return refund


def _payment_intent_param(params: JSON) -> str:
    pi_id = params.get("payment_intent")
    if pi_id in (None, ""):
        raise StandinError.invalid("Missing required param: payment_intent.",
                                   code="parameter_missing", param="payment_intent")
    if not isinstance(pi_id, str):
        raise StandinError.invalid("Invalid string", code="parameter_invalid",
                                   param="payment_intent")
    return pi_id


def _checked_amount(store: Store, pi: JSON, amount: int | None) -> int:
    """The amount to refund (default: all that is left), checked against the payment's state;
    these answers depend on state, so they are kept under the idempotency key."""
    if pi["status"] != "succeeded" or not pi["latest_charge"]:
        raise StandinError(
            400, "invalid_request_error",
            f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund.",
            code="charge_not_refundable", param="payment_intent", replayable=True)
    left = refundable(store, pi)
    if left <= 0:
        raise StandinError(400, "invalid_request_error",
                           f"Charge {pi['latest_charge']} has already been refunded.",
                           code="charge_already_refunded", replayable=True)
    if amount is None:
        return left
    if amount > left:
        raise StandinError(
            400, "invalid_request_error",
            f"Refund amount ({format_amount(amount, pi['currency'])}) is greater than "
            f"unrefunded amount on charge ({format_amount(left, pi['currency'])})",
            code="amount_too_large", param="amount", replayable=True)
    return amount


def resolve(store: Store, re_id: str, outcome: Literal["succeeded", "failed"]) -> JSON:
    """Move a pending refund to ``succeeded`` or ``failed`` (409 when not pending)."""
    refund = store.get_refund(re_id)
    if refund["status"] != "pending":
        raise StandinError(409, "invalid_request_error",
                           f"Cannot resolve refund {re_id}: it is {refund['status']}.",
                           code="refund_unexpected_state")
    if outcome == "succeeded":
        refund.update(status="succeeded", failure_reason=None)
    else:
        refund.update(status="failed", failure_reason=FAILURE_REASON)
    return refund


def charge_of(store: Store, pi: JSON) -> JSON:
    """The Charge behind a succeeded payment intent, with its refunds (newest first)."""
    refunds = store.refunds_of(pi["id"])[::-1]  # insertion order is creation order
    refunded = sum(r["amount"] for r in refunds if r["status"] == "succeeded")
    charge_id = pi["latest_charge"]
    return {
        "id": charge_id,
        "object": "charge",
        "amount": pi["amount"],
        "amount_captured": pi["amount_received"],
        "amount_refunded": refunded,
        "balance_transaction": None,
        "captured": True,
        "created": pi["created"],
        "currency": pi["currency"],
        "customer": pi["customer"],
        "description": pi["description"],
        "livemode": False,
        "metadata": copy.deepcopy(pi["metadata"]),
        "paid": True,
        "payment_intent": pi["id"],
        "payment_method": pi["payment_method"],
        "refunded": pi["amount_received"] > 0 and refunded >= pi["amount_received"],
        "refunds": {"object": "list", "data": copy.deepcopy(refunds), "has_more": False,
                    "total_count": len(refunds), "url": f"/v1/charges/{charge_id}/refunds"},
        "status": "succeeded",
    }
