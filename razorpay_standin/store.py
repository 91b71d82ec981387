"""The stand-in's state and rules: orders, payments (one per checkout attempt), refunds and
the events they cause, in Razorpay's entity shapes. In memory; one `Store` per app."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_id(prefix: str) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(14))


class RazorpayError(Exception):
    """A Razorpay-shaped error answer (``{"error": {"code", "description", ...}}``)."""

    def __init__(self, status: int, description: str, code: str = "BAD_REQUEST_ERROR",
                 field_name: str | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.code, self.field = (status, description, code,
                                                                field_name)

    def body(self) -> JSON:
        return {"error": {"code": self.code, "description": self.description,
                          "source": "business" if self.status < 500 else "internal",
                          "step": "payment_initiation", "reason": "input_validation_failed"
                          if self.status < 500 else "server_error",
                          "metadata": {}, "field": self.field}}


def _page(items: list[JSON], query: dict[str, str]) -> JSON:
    """Razorpay's listing: newest first, ``from`` / ``to`` (unix seconds), ``count`` (≤ 100,
    default 10) and ``skip``."""
    try:
        since, until = int(query.get("from", 0)), int(query.get("to", 2**62))
        skip, count = int(query.get("skip", 0)), int(query.get("count", 10))
    except ValueError:
        raise RazorpayError(400, "from, to, count and skip must be integers") from None
    if not 1 <= count <= 100 or skip < 0:
        raise RazorpayError(400, "count must be from 1 to 100", field_name="count")
    items = sorted((i for i in items if since <= i["created_at"] <= until),
                   key=lambda i: i["created_at"], reverse=True)
    page = items[skip:skip + count]
    return {"entity": "collection", "count": len(page), "items": page}


def checkout_signature(order_id: str, payment_id: str, key_secret: str) -> str:
    """What Razorpay's checkout hands the page's handler: HMAC-SHA256 (hex) of
    ``order_id|payment_id`` under the key secret."""
    return hmac.new(key_secret.encode(), f"{order_id}|{payment_id}".encode(),
                    hashlib.sha256).hexdigest()


@dataclass
class StoredEvent:
    id: str
    type: str
    payload: str  # the exact body sent (and signed)
    flow_id: str | None
    order_id: str | None
    created_at: int


@dataclass
class Store:
    orders: dict[str, JSON] = field(default_factory=dict)
    payments: dict[str, JSON] = field(default_factory=dict)
    refunds: dict[str, JSON] = field(default_factory=dict)
    events: list[StoredEvent] = field(default_factory=list)
    account_id: str = "acc_walletflowstandin"

    # -- orders -------------------------------------------------------------------------------

    def create_order(self, body: JSON) -> JSON:
        amount, currency = body.get("amount"), body.get("currency")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 100:
            raise RazorpayError(400, "The amount must be atleast INR 1.00", field_name="amount")
        if not isinstance(currency, str) or len(currency) != 3:
            raise RazorpayError(400, "The currency field is invalid", field_name="currency")
        receipt = body.get("receipt")
        if receipt is not None and (not isinstance(receipt, str) or len(receipt) > 40):
            raise RazorpayError(400, "The receipt may not be greater than 40 characters.",
                                field_name="receipt")
        notes = body.get("notes") or {}
        if not isinstance(notes, dict) or len(notes) > 15:
            raise RazorpayError(400, "notes must be an object of at most 15 keys",
                                field_name="notes")
        order: JSON = {"id": new_id("order"), "entity": "order", "amount": amount, "amount_paid": 0,
                 "amount_due": amount, "currency": currency.upper(), "receipt": receipt,
                 "offer_id": None, "status": "created", "attempts": 0,
                 "notes": {str(k): str(v) for k, v in notes.items()},
                 "created_at": int(time.time())}
        self.orders[order["id"]] = order
        return order

    def order(self, order_id: str) -> JSON:
        try:
            return self.orders[order_id]
        except KeyError:
            raise RazorpayError(400, "The id provided does not exist") from None

    def list_orders(self, query: dict[str, str]) -> JSON:
        items = list(self.orders.values())
        if "receipt" in query:
            items = [o for o in items if o["receipt"] == query["receipt"]]
        return _page(items, query)

    def list_refunds(self, query: dict[str, str]) -> JSON:
        return _page(list(self.refunds.values()), query)

    def order_payments(self, order_id: str) -> JSON:
        self.order(order_id)
        items = [p for p in self.payments.values() if p["order_id"] == order_id]
        return {"entity": "collection", "count": len(items), "items": items}

    # -- checkout: a payment attempt on an order ----------------------------------------------

    def attempt(self, order_id: str, succeed: bool, reason: str | None = None) -> JSON:
        """The customer pays (captured: auto-capture) or is declined; the payment entity."""
        order = self.order(order_id)
        if order["status"] == "paid":
            raise RazorpayError(400, "Order has already been paid")
        order["attempts"] += 1
        payment = {"id": new_id("pay"), "entity": "payment", "amount": order["amount"],
                   "currency": order["currency"], "status": "captured" if succeed else "failed",
                   "order_id": order_id, "invoice_id": None, "international": False,
                   "method": "card", "amount_refunded": 0, "refund_status": None,
                   "captured": succeed, "description": None, "email": "payer@example.com",
                   "contact": "+919000090000", "notes": dict(order["notes"]), "fee": None,
                   "tax": None, "error_code": None, "error_description": None,
                   "error_source": None, "error_step": None, "error_reason": None,
                   "created_at": int(time.time())}
        if succeed:
            order.update(status="paid", amount_paid=order["amount"], amount_due=0)
        else:
            order["status"] = "attempted"
            payment.update(error_code="BAD_REQUEST_ERROR",
                           error_description="Payment processing failed because of the bank",
                           error_source="bank", error_step="payment_authorization",
                           error_reason=reason or "payment_failed")
        self.payments[payment["id"]] = payment
        return payment

    def payment(self, payment_id: str) -> JSON:
        try:
            return self.payments[payment_id]
        except KeyError:
            raise RazorpayError(400, "The id provided does not exist") from None

    # -- refunds ------------------------------------------------------------------------------

    def create_refund(self, payment_id: str, body: JSON) -> JSON:
        payment = self.payment(payment_id)
        if payment["status"] not in ("captured", "refunded"):
            raise RazorpayError(400, "The payment has not been captured")
        amount = body.get("amount", payment["amount"] - payment["amount_refunded"])
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 100:
            raise RazorpayError(400, "The amount must be atleast INR 1.00", field_name="amount")
        reserved = sum(r["amount"] for r in self.refunds.values()
                       if r["payment_id"] == payment_id and r["status"] != "failed")
        if reserved + amount > payment["amount"]:
            raise RazorpayError(400, "The refund amount provided is greater than amount "
                                "captured", field_name="amount")
        notes = body.get("notes") or {}
        refund = {"id": new_id("rfnd"), "entity": "refund", "amount": amount,
                  "currency": payment["currency"], "payment_id": payment_id,
                  "notes": {str(k): str(v) for k, v in notes.items()},
                  "receipt": body.get("receipt"), "acquirer_data": {"arn": None},
                  "created_at": int(time.time()), "batch_id": None, "status": "pending",
                  "speed_processed": "normal", "speed_requested": "normal"}
        self.refunds[refund["id"]] = refund
        return refund

    def refund(self, refund_id: str) -> JSON:
        try:
            return self.refunds[refund_id]
        except KeyError:
            raise RazorpayError(400, "The id provided does not exist") from None

    def payment_refunds(self, payment_id: str) -> JSON:
        self.payment(payment_id)
        items = [r for r in self.refunds.values() if r["payment_id"] == payment_id]
        return {"entity": "collection", "count": len(items), "items": items}

    def resolve_refund(self, refund_id: str, processed: bool) -> JSON:
        refund = self.refund(refund_id)
        if refund["status"] != "pending":
            raise RazorpayError(400, f"the refund is already {refund['status']}")
        refund["status"] = "processed" if processed else "failed"
        if processed:
            payment = self.payments[refund["payment_id"]]
            payment["amount_refunded"] += refund["amount"]
            full = payment["amount_refunded"] >= payment["amount"]
            payment["refund_status"] = "full" if full else "partial"
            if full:
                payment["status"] = "refunded"
        return refund

    # -- events -------------------------------------------------------------------------------

    def record_event(self, event_type: str, entities: dict[str, JSON]) -> StoredEvent:
        """An event carrying ``entities`` (``{"payment": {...}, "order": {...}}``), as Razorpay
        sends it: ``payload.<name>.entity``."""
        now = int(time.time())
        body = {"entity": "event", "account_id": self.account_id, "event": event_type,
                "contains": list(entities),
                "payload": {name: {"entity": dict(e)} for name, e in entities.items()},
                "created_at": now}
        first = next(iter(entities.values()))
        order_id = first.get("order_id") or (first["id"] if first.get("entity") == "order"
                                             else None)
        if order_id is None and first.get("payment_id") in self.payments:
            order_id = self.payments[first["payment_id"]]["order_id"]
        flow_id = (first.get("notes") or {}).get("flow_id")
        if flow_id is None and order_id in self.orders:
            flow_id = self.orders[order_id]["notes"].get("flow_id")
        event = StoredEvent(new_id("evt"), event_type, json.dumps(body, separators=(",", ":")),
                            flow_id, order_id, now)
        self.events.append(event)
        return event

    def event(self, event_id: str) -> StoredEvent:
        for event in self.events:
            if event.id == event_id:
                return event
        raise RazorpayError(404, f"no event {event_id}")
