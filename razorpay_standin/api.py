"""The Razorpay API routes the official Python SDK calls, in Razorpay's wire format: JSON
bodies, HTTP basic auth with the key id and secret, ``{"error": {...}}`` answers."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from razorpay_standin.service import RazorpayStandin
from razorpay_standin.store import JSON, RazorpayError


def _authorized(request: Request, svc: RazorpayStandin) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    try:
        key_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        key_id = secret = ""
    if scheme.lower() != "basic" or not (
            secrets.compare_digest(key_id, svc.config.key_id)
            and secrets.compare_digest(secret, svc.config.key_secret)):
        raise RazorpayError(401, "The api key provided is invalid")


async def _body(request: Request) -> JSON:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise RazorpayError(400, "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RazorpayError(400, "The request body must be a JSON object")
    return body


def _flow_of(svc: RazorpayStandin, order_id: str | None = None,
             payment_id: str | None = None) -> str | None:
    store = svc.store
    if payment_id in store.payments:
        order_id = store.payments[payment_id]["order_id"]
    order = store.orders.get(order_id or "")
    return order["notes"].get("flow_id") if order else None


def razorpay_routes(app: FastAPI, svc: RazorpayStandin) -> None:
    @app.exception_handler(RazorpayError)
    async def _error(_: Request, exc: RazorpayError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    async def guard(request: Request, operation: str, flow_id: str | None) -> None:
        _authorized(request, svc)
        await svc.fault(operation, flow_id)

    _order_routes(app, svc, guard)
    _payment_routes(app, svc, guard)

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def unknown(rest: str) -> Any:
        raise RazorpayError(404, "The requested URL was not found on the server.")


Guard = Callable[[Request, str, "str | None"], Awaitable[None]]


def _order_routes(app: FastAPI, svc: RazorpayStandin, guard: Guard) -> None:
    @app.post("/v1/orders")
    async def create_order(request: Request) -> Any:
        body = await _body(request)
        notes = body.get("notes") if isinstance(body.get("notes"), dict) else {}
        await guard(request, "orders.create", (notes or {}).get("flow_id"))
        return svc.store.create_order(body)

    @app.get("/v1/orders")
    async def list_orders(request: Request) -> Any:
        await guard(request, "orders.list", None)
        return svc.store.list_orders(dict(request.query_params))

    @app.get("/v1/orders/{order_id}")
    async def fetch_order(order_id: str, request: Request) -> Any:
        await guard(request, "orders.fetch", _flow_of(svc, order_id))
        return svc.store.order(order_id)

    @app.get("/v1/orders/{order_id}/payments")
    async def order_payments(order_id: str, request: Request) -> Any:
        await guard(request, "orders.payments", _flow_of(svc, order_id))
        return svc.store.order_payments(order_id)


def _payment_routes(app: FastAPI, svc: RazorpayStandin, guard: Guard) -> None:
    @app.get("/v1/payments/{payment_id}")
    async def fetch_payment(payment_id: str, request: Request) -> Any:
        await guard(request, "payments.fetch", _flow_of(svc, payment_id=payment_id))
        return svc.store.payment(payment_id)

    @app.post("/v1/payments/{payment_id}/refund")
    async def refund_payment(payment_id: str, request: Request) -> Any:
        body = await _body(request)
        await guard(request, "payments.refund", _flow_of(svc, payment_id=payment_id))
        return svc.create_refund(payment_id, body)

    @app.get("/v1/payments/{payment_id}/refunds")
    async def payment_refunds(payment_id: str, request: Request) -> Any:
        await guard(request, "payments.refunds", _flow_of(svc, payment_id=payment_id))
        return svc.store.payment_refunds(payment_id)

    @app.get("/v1/refunds")
    async def list_refunds(request: Request) -> Any:
        await guard(request, "refunds.list", None)
        return svc.store.list_refunds(dict(request.query_params))

    @app.get("/v1/refunds/{refund_id}")
    async def fetch_refund(refund_id: str, request: Request) -> Any:
        refund = svc.store.refunds.get(refund_id)
        await guard(request, "refunds.fetch",
                    _flow_of(svc, payment_id=refund["payment_id"]) if refund else None)
        return svc.store.refund(refund_id)
