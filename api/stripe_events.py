"""A verified Stripe event, read strictly: every field the webhook handler uses is checked here
for presence and type, so a signed but malformed event is refused (400 ``malformed_payload``)
instead of failing later (a 5xx, which Stripe retries for days). Events the service acts on
name a gateway object (a payment intent, a refund, a payout) by its id; the handler routes
them by that id (``db/gateway_objects.py``)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from typing import Any

from contracts.gateway import (
    PAYMENT_CANCELED,
    PAYMENT_EXPIRED_REASON,
    PAYMENT_FAILED,
    PAYMENT_PENDING,
    PAYMENT_SUCCEEDED,
    PaymentEvent,
    PayoutEvent,
    RefundEvent,
)
from contracts.money import CURRENCY_EXPONENTS, Money
from db.gateway_objects import GatewayObjectKind as Kind

# An id or a flow id as Stripe and this service write them: printable ASCII, no spaces.
_ID = re.compile(r"^[\x21-\x7e]{1,255}\Z")
_TYPE = re.compile(r"^[a-z0-9_.]{1,100}\Z")
_CURRENCY = re.compile(r"^[A-Za-z]{3}\Z")
SESSION = "checkout.session"
STRIPE_REFUND_STATUS = {"succeeded": PAYMENT_SUCCEEDED, "failed": PAYMENT_FAILED,
                        "canceled": PAYMENT_FAILED, "pending": PAYMENT_PENDING}
# event type → (the Stripe object type it carries, our kind, the signal, the status)
ROUTED: dict[str, tuple[str, Kind, str, str]] = {
    "payment_intent.succeeded": ("payment_intent", Kind.PAYMENT, "payment_event",
                                 PAYMENT_SUCCEEDED),
    "payment_intent.payment_failed": ("payment_intent", Kind.PAYMENT, "payment_event",
                                      PAYMENT_FAILED),
    "payment_intent.canceled": ("payment_intent", Kind.PAYMENT, "payment_event",
                                PAYMENT_CANCELED),
    "refund.updated": ("refund", Kind.REFUND, "refund_event", ""),  # status: the object's
    "refund.failed": ("refund", Kind.REFUND, "refund_event", ""),
    "payout.paid": ("payout", Kind.PAYOUT, "payout_event", PAYMENT_SUCCEEDED),
    "payout.failed": ("payout", Kind.PAYOUT, "payout_event", PAYMENT_FAILED),
    # A Checkout Session (gateway "stripe_checkout") is the flow's payment; completed: its
    # payment_status says paid, or unpaid until the async payment method settles.
    "checkout.session.completed": (SESSION, Kind.PAYMENT, "payment_event", ""),
    "checkout.session.async_payment_succeeded": (SESSION, Kind.PAYMENT, "payment_event",
                                                 PAYMENT_SUCCEEDED),
    "checkout.session.async_payment_failed": (SESSION, Kind.PAYMENT, "payment_event",
                                              PAYMENT_FAILED),
    "checkout.session.expired": (SESSION, Kind.PAYMENT, "payment_event", PAYMENT_CANCELED),
}
# The metadata a Checkout Session gives its PaymentIntent: that intent's events are ignored
# (the session's events decide, and it is the session the flow recorded).
SURFACE_KEY, CHECKOUT_SURFACE = "walletflow_surface", "stripe_checkout"
Signal = PaymentEvent | RefundEvent | PayoutEvent


class MalformedEvent(ValueError):
    """A signed event the handler cannot read; the message says which field and why."""


@dataclass(frozen=True)
class StripeEvent:
    id: str
    type: str
    payload: dict[str, Any]
    kind: Kind | None = None  # None: a type the service does not act on (only recorded)
    object_id: str = ""
    flow_id: str | None = None  # the object's metadata.flow_id: a cross-check only
    amount: int | None = None  # minor units, with ``currency`` (upper case)
    currency: str | None = None
    signal_name: str = ""
    signal: Signal | None = None
    gateway: str = "stripe"  # the gateway the object is recorded under (db/gateway_objects.py)
    note: str | None = None  # why an event of a known type is not acted on


    def money(self) -> Money | None:
        if self.amount is None or self.currency is None:
            return None
        return Money(self.amount, self.currency)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def event_field(container: dict[str, Any], name: str, where: str, kind: type | tuple[type, ...],
           required: bool = True) -> Any:
    value = container.get(name)
    if value is None:
        if required:
            raise MalformedEvent(f"{where}{name} is missing or null")
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise MalformedEvent(f"{where}{name} has the wrong type ({type(value).__name__})")
    return value


def well_formed(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise MalformedEvent(f"{what} is not well formed")
    return value


def parse_event(body: bytes) -> StripeEvent:
    """The event as the handler uses it, or ``MalformedEvent``."""
    try:
        raw = json.loads(body, parse_float=_finite, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise MalformedEvent("the body is not JSON") from None
    if not isinstance(raw, dict):
        raise MalformedEvent("the event is not a JSON object")
    event_id = well_formed(event_field(raw, "id", "", str), _ID, "id")
    event_type = well_formed(event_field(raw, "type", "", str), _TYPE, "type")
    data = event_field(raw, "data", "", dict)
    obj = event_field(data, "object", "data.", dict)
    if event_type not in ROUTED:
        return StripeEvent(event_id, event_type, raw)
    stripe_type, kind, signal_name, status = ROUTED[event_type]
    if event_field(obj, "object", "data.object.", str) != stripe_type:
        raise MalformedEvent(f"a {event_type} event must carry a {stripe_type}")
    object_id = well_formed(event_field(obj, "id", "data.object.", str), _ID, "data.object.id")
    metadata = event_field(obj, "metadata", "data.object.", dict, required=False) or {}
    flow_id = event_field(metadata, "flow_id", "data.object.metadata.", str, required=False) or None
    if flow_id is not None:
        well_formed(flow_id, _ID, "data.object.metadata.flow_id")
    amount, currency = _amount(obj, "amount_total" if stripe_type == SESSION else "amount")
    if metadata.get(SURFACE_KEY) == CHECKOUT_SURFACE and stripe_type == "payment_intent":
        return StripeEvent(event_id, event_type, raw, flow_id=flow_id,
                           note="the payment intent of a Checkout Session: its session's "
                                "events decide")
    event = StripeEvent(event_id, event_type, raw, kind, object_id, flow_id, amount, currency,
                        signal_name, gateway=CHECKOUT_SURFACE if stripe_type == SESSION
                        else "stripe")
    return replace(event, signal=_signal(event, obj, status))


def _amount(obj: dict[str, Any], name: str = "amount") -> tuple[int | None, str | None]:
    where = "data.object."
    amount = event_field(obj, name, where, int, required=False)
    if amount is None:
        return None, None
    if amount < 0:
        raise MalformedEvent(f"data.object.{name} is negative")
    currency = well_formed(event_field(obj, "currency", where, str), _CURRENCY,
                           "data.object.currency")
    return amount, currency.upper()


def _signal(event: StripeEvent, obj: dict[str, Any], status: str) -> Signal:
    where = "data.object."
    if event.gateway == CHECKOUT_SURFACE:
        return _session_signal(event, obj, status)
    if event.kind is Kind.PAYMENT:
        error = event_field(obj, "last_payment_error", where, dict, required=False) or {}
        reason = event_field(error, "code", where + "last_payment_error.", str, required=False)
        money = event.money() if event.currency in CURRENCY_EXPONENTS else None
        return PaymentEvent(event.id, event.object_id, status, money, reason)
    if event.kind is Kind.REFUND:
        state = event_field(obj, "status", where, str, required=False) or ""
        reason = event_field(obj, "failure_reason", where, str, required=False)
        return RefundEvent(event.id, event.object_id,
                           STRIPE_REFUND_STATUS.get(state, PAYMENT_PENDING), reason)
    reason = event_field(obj, "failure_code", where, str, required=False)
    return PayoutEvent(event.id, event.object_id, status, reason)


def _session_signal(event: StripeEvent, obj: dict[str, Any], status: str) -> PaymentEvent:
    """A Checkout Session's event: completed and paid (or nothing to pay) → succeeded,
    completed but unpaid → pending (its async_payment_* event decides)."""
    where = "data.object."
    paid = event_field(obj, "payment_status", where, str)
    if not status:
        status = PAYMENT_SUCCEEDED if paid in ("paid", "no_payment_required") else PAYMENT_PENDING
    reason = {PAYMENT_FAILED: "async_payment_failed",
              PAYMENT_CANCELED: PAYMENT_EXPIRED_REASON}.get(status)
    money = event.money() if event.currency in CURRENCY_EXPONENTS else None
    return PaymentEvent(event.id, event.object_id, status, money, reason)
