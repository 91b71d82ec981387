"""Shopify and WooCommerce order webhooks. The tenant is the one whose secret verifies the raw
body (an unsigned header only narrows the candidates); each delivery is stored once; order
creation reports a purchase, cancellation and refunds signal its flow."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import AppSettings, DbSession, RawBody, Temporal
from api.errors import ProblemError
from api.purchases import Reporter, Sale
from api.schemas import ORDER_ID, money
from api.signatures import shopify_valid, woocommerce_valid
from contracts.errors import ErrorCode as E
from contracts.money import format_amount
from contracts.purchase import StoreEvent
from db.stores import StoreRepository
from db.webhook_events import WebhookEventRepository

router = APIRouter(tags=["webhooks"])


async def _verified_tenant(session: AsyncSession, platform: str, hint: str | None, body: bytes,
                           signature: str | None, valid: Callable[[bytes, str | None, str], bool]
                           ) -> dict[str, Any]:
    if not signature:
        raise ProblemError(E.SIGNATURE_MISSING, "the signature header is missing")
    stores = StoreRepository(session)
    candidates = (await stores.credentials(platform, hint) if hint else []) or \
        await stores.credentials(platform, None)
    for candidate in candidates:
        if valid(body, signature, candidate["secret"]):
            return candidate
    raise ProblemError(E.SIGNATURE_INVALID, "no store secret verifies this delivery")


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body, parse_float=Decimal, parse_constant=_not_a_number)
    except (ValueError, RecursionError):
        raise ProblemError(E.MALFORMED_PAYLOAD, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise ProblemError(E.MALFORMED_PAYLOAD, "the body is not a JSON object")
    return data


def _attr(pairs: Any, name: str, key: str = "name") -> str | None:
    for pair in pairs or []:
        if isinstance(pair, dict) and pair.get(key) == name and pair.get("value"):
            return str(pair["value"])
    return None


def _text(value: Any) -> str | None:
    """An optional text field (an email): a string PostgreSQL can store, else malformed."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or "\x00" in value or len(value) > 320:
        raise ValueError("not a text field")
    value.encode("utf-8")  # an unpaired surrogate raises UnicodeEncodeError (a ValueError)
    return value


def _order_id(value: Any) -> str:
    """A store's order id (a number or a word), as the purchase's flow id carries it."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError("order id")
    text = str(value)
    if not re.match(ORDER_ID, text):
        raise ValueError(f"invalid order id {text[:40]!r}")
    return text


def _decimal(value: Any) -> Decimal:
    """An exact amount: finite and of sane magnitude (never expands 1e999999999)."""
    amount = Decimal(str(value))  # decimal.InvalidOperation is an ArithmeticError
    if not amount.is_finite() or abs(amount.adjusted()) > 30:
        raise ValueError("amount out of range")
    return amount


def _datetime(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ProblemError(E.MALFORMED_PAYLOAD, f"bad timestamp {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.now().astimezone().tzinfo)


# (reporter, the store's public key, topic, event id, payload) → outcome
Handler = Callable[[Reporter, str, str, str, dict[str, Any]], Awaitable[str]]


async def _process_once(reporter: Reporter, shop: str, platform: str, event_id: str | None,
                        topic: str, body: bytes, handler: Handler) -> dict[str, Any]:
    """Store the delivery once per (store, event id), then let ``handler`` act on it."""
    if not event_id:
        raise ProblemError(E.MALFORMED_PAYLOAD, "the delivery id header is missing")
    data = _json(body)
    source = f"{platform}:{reporter.tenant_id}"
    events = WebhookEventRepository(reporter.session)
    if not await events.record(source, event_id, topic, None, data):
        return {"received": True, "duplicate": True}
    try:
        outcome = await handler(reporter, shop, topic, event_id, data)
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError):
        # a field missing or of another type than the topic's payload has (never a 5xx)
        raise ProblemError(E.MALFORMED_PAYLOAD, f"unexpected {topic} payload") from None
    await events.mark(source, event_id, outcome, outcome == "signalled")
    return {"received": True, "outcome": outcome}


@router.post("/v1/webhooks/shopify", summary="Shopify order webhooks")
async def shopify_webhook(request: Request, body: RawBody, session: DbSession,
                          temporal: Temporal, settings: AppSettings) -> dict[str, Any]:
    h = request.headers
    tenant = await _verified_tenant(session, "shopify", h.get("x-shopify-shop-domain"), body,
                                    h.get("x-shopify-hmac-sha256"), shopify_valid)
    reporter = Reporter(session, temporal, settings, tenant["tenant_id"], tenant["slug"])
    return await _process_once(reporter, tenant["public_key"], "shopify",
                               h.get("x-shopify-webhook-id"), h.get("x-shopify-topic", ""), body,
                               _shopify)


async def _shopify(reporter: Reporter, shop: str, topic: str, event_id: str,
                   data: dict[str, Any]) -> str:
    if topic == "orders/create":
        customer = data.get("customer") or {}
        user_id = _attr(data.get("note_attributes"), "walletflow_user_id") or (
            f"shopify-{customer['id']}" if customer.get("id") else None)
        if not user_id:
            return "ignored_no_customer"
        await reporter.purchase(Sale(
            _order_id(data["id"]), user_id,
            money(str(data["total_price"]), str(data["currency"])),
            "shopify", email=_text(data.get("email")) or _text(customer.get("email")), shop=shop,
            occurred_at=_datetime(data.get("created_at"))))
        return "purchase_reported"
    if topic == "orders/cancelled":
        return await reporter.store_event(_order_id(data["id"]),
                                          StoreEvent(f"shopify:{event_id}", "cancelled"))
    if topic == "refunds/create":
        transactions = [t for t in data.get("transactions", []) if t.get("kind") == "refund"]
        if not transactions:
            return "ignored_no_refund_transaction"
        currency = str(transactions[0]["currency"])
        total = sum(money(str(t["amount"]), currency).amount for t in transactions)
        refund = money(format_amount(total, currency), currency)
        return await reporter.store_event(_order_id(data["order_id"]),
                                          StoreEvent(f"shopify:{event_id}", "refunded",
                                                     refund=refund))
    return "ignored_topic"


@router.post("/v1/webhooks/woocommerce", summary="WooCommerce order webhooks")
async def woocommerce_webhook(request: Request, body: RawBody, session: DbSession,
                              temporal: Temporal, settings: AppSettings) -> dict[str, Any]:
    h = request.headers
    if not h.get("x-wc-webhook-signature") and body.startswith(b"webhook_id="):
        return {"received": True, "outcome": "ping"}  # WooCommerce's unsigned ping on setup
    tenant = await _verified_tenant(session, "woocommerce", h.get("x-wc-webhook-source"), body,
                                    h.get("x-wc-webhook-signature"), woocommerce_valid)
    reporter = Reporter(session, temporal, settings, tenant["tenant_id"], tenant["slug"])
    return await _process_once(reporter, tenant["public_key"], "woocommerce",
                               h.get("x-wc-webhook-delivery-id"), h.get("x-wc-webhook-topic", ""),
                               body, _woocommerce)


async def _woocommerce(reporter: Reporter, shop: str, topic: str, event_id: str,
                       data: dict[str, Any]) -> str:
    order_id = _order_id(data["id"])
    currency = str(data["currency"])
    status = data.get("status")
    if topic == "order.created":
        billing = data.get("billing") or {}
        user_id = _attr(data.get("meta_data"), "walletflow_user_id", key="key") or (
            f"woo-{data['customer_id']}" if data.get("customer_id") else None)
        if not user_id:
            return "ignored_no_customer"
        created = data.get("date_created_gmt")
        await reporter.purchase(Sale(
            order_id, user_id, money(str(data["total"]), currency), "woocommerce",
            email=_text(billing.get("email")), shop=shop,
            occurred_at=_datetime(created and f"{created}Z")))
        return "purchase_reported"
    if topic == "order.updated" and status == "cancelled":
        return await reporter.store_event(order_id, StoreEvent(f"woo:{event_id}", "cancelled"))
    if topic == "order.updated" and (status == "refunded" or data.get("refunds")):
        refunded = sum(abs(_decimal(r["total"])) for r in data.get("refunds") or [])
        if status == "refunded" and not refunded:
            refunded = _decimal(data["total"])
        total = money(format(refunded, "f"), currency)
        return await reporter.store_event(order_id, StoreEvent(f"woo:{event_id}", "refunded",
                                                               refunded_total=total))
    return "ignored_topic"
