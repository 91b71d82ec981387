"""A verified Razorpay event, read strictly (like ``api/stripe_events.py``): the event id comes
from the ``X-Razorpay-Event-Id`` header, the rest from the body; a signed but malformed event is
refused (400 ``malformed_payload``). Razorpay's payment id for a flow is the **order** id: a
``payment.captured`` / ``order.paid`` event is a succeeded ``PaymentEvent`` about the order, a
``payment.failed`` a failed one (one failed attempt fails the flow); ``refund.processed`` /
``refund.failed`` are ``RefundEvent``s. Other types are only recorded."""

from __future__ import annotations

import json
import re
from typing import Any

from api.stripe_events import MalformedEvent, StripeEvent, event_field, well_formed
from contracts.gateway import PAYMENT_FAILED, PAYMENT_SUCCEEDED, PaymentEvent, RefundEvent
from contracts.money import CURRENCY_EXPONENTS, Money
from db.gateway_objects import GatewayObjectKind as Kind

_ID = re.compile(r"^[\x21-\x7e]{1,255}\Z")
_TYPE = re.compile(r"^[a-z0-9_.]{1,100}\Z")
_CURRENCY = re.compile(r"^[A-Za-z]{3}\Z")
# event type → (the entity it is about, our kind, the signal, the status)
ROUTED: dict[str, tuple[str, Kind, str, str]] = {
    "payment.captured": ("payment", Kind.PAYMENT, "payment_event", PAYMENT_SUCCEEDED),
    "order.paid": ("order", Kind.PAYMENT, "payment_event", PAYMENT_SUCCEEDED),
    "payment.failed": ("payment", Kind.PAYMENT, "payment_event", PAYMENT_FAILED),
    "refund.processed": ("refund", Kind.REFUND, "refund_event", PAYMENT_SUCCEEDED),
    "refund.failed": ("refund", Kind.REFUND, "refund_event", PAYMENT_FAILED),
}
RazorpayEvent = StripeEvent  # the same shape, routed the same way


def read_body(body: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(body, parse_float=lambda _: _reject("a float"),
                         parse_constant=lambda _: _reject("a constant"))
    except (ValueError, RecursionError):
        raise MalformedEvent("the body is not JSON") from None
    if not isinstance(raw, dict):
        raise MalformedEvent("the event is not a JSON object")
    return raw


def _reject(what: str) -> Any:
    raise ValueError(f"{what} where an integer is expected")


def created_at(raw: dict[str, Any]) -> int:
    return int(event_field(raw, "created_at", "", int))


def parse_event(event_id: str | None, raw: dict[str, Any]) -> RazorpayEvent:
    """The event as the handler uses it, or ``MalformedEvent``."""
    if not event_id:
        raise MalformedEvent("the X-Razorpay-Event-Id header is missing")
    event_id = well_formed(event_id, _ID, "X-Razorpay-Event-Id")
    event_type = well_formed(event_field(raw, "event", "", str), _TYPE, "event")
    payload = event_field(raw, "payload", "", dict)
    if event_type not in ROUTED:
        return RazorpayEvent(event_id, event_type, raw)
    entity_name, kind, signal_name, status = ROUTED[event_type]
    wrapper = event_field(payload, entity_name, "payload.", dict)
    where = f"payload.{entity_name}.entity."
    entity = event_field(wrapper, "entity", f"payload.{entity_name}.", dict)
    entity_id = well_formed(event_field(entity, "id", where, str), _ID, where + "id")
    object_id = entity_id
    if entity_name == "payment":  # the flow's payment is the order the payment was for
        object_id = well_formed(event_field(entity, "order_id", where, str), _ID,
                                where + "order_id")
    notes = entity.get("notes")
    notes = notes if isinstance(notes, dict) else {}  # Razorpay sends [] for no notes
    flow_id = notes.get("flow_id") if isinstance(notes.get("flow_id"), str) else None
    if flow_id is not None:
        well_formed(flow_id, _ID, where + "notes.flow_id")
    amount = event_field(entity, "amount", where, int)
    if amount < 0:
        raise MalformedEvent(where + "amount is negative")
    currency = well_formed(event_field(entity, "currency", where, str), _CURRENCY,
                      where + "currency").upper()
    reason = (event_field(entity, "error_reason", where, str, required=False)
              or event_field(entity, "error_code", where, str, required=False))
    return RazorpayEvent(event_id, event_type, raw, kind, object_id, flow_id, amount, currency,
                         signal_name, _signal(event_id, kind, object_id, status,
                                              Money(amount, currency), reason),
                         gateway="razorpay")


def _signal(event_id: str, kind: Kind, object_id: str, status: str, said: Money,
            reason: str | None) -> PaymentEvent | RefundEvent:
    if kind is Kind.REFUND:
        return RefundEvent(event_id, object_id, status,
                           "refund failed" if status == PAYMENT_FAILED else None)
    money = said if said.currency in CURRENCY_EXPONENTS else None
    return PaymentEvent(event_id, object_id, status, money,
                        reason if status == PAYMENT_FAILED else None)
