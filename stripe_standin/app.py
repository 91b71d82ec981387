"""A local, Stripe-compatible stand-in for the slice of the API walletflow uses; `create_app`
builds one app from a `StandinConfig`.

* ``/v1/payment_intents`` (create, retrieve, cancel), ``/v1/refunds`` (create, retrieve) and
  ``/v1/payouts`` (create, retrieve) speak Stripe's wire format: form-encoded bodies, Bearer auth,
  Idempotency-Key semantics, Stripe-shaped errors; the official SDK talks to it unchanged
  (`stripe_api`, with the resources' rules in `payment_intents`, `refunds`, `payouts`).
* Events are signed exactly like Stripe's (``Stripe-Signature: t=...,v1=...``) and delivered in
  background tasks with retries (`webhooks`).
* ``/_standin/...`` is a JSON control API for dev and tests: move payments, refunds and payouts
  to their final states, inject faults (`faults`), inspect stats, the call log, events and
  deliveries, re-sign or re-deliver events (`control`).
* ``/checkout/{id}`` is a tiny hosted "payment page" for humans in the dev stack (`checkout`).
* ``/v1/checkout/sessions`` (create, retrieve, expire, list): hosted Checkout Sessions, their
  page at ``/c/pay/{id}``, their expiry and their ``/_standin/checkout_sessions`` control routes
  (`checkout_sessions`).

All state belongs to the app instance made by `create_app` (a `service.Standin` holding a
`store.Store`); two apps never share anything."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stripe_standin.checkout import checkout_routes, session_page_routes
from stripe_standin.checkout_sessions import checkout_session_routes
from stripe_standin.config import StandinConfig
from stripe_standin.connect_routes import connect_control_routes
from stripe_standin.control import control_routes
from stripe_standin.service import Standin
from stripe_standin.stripe_api import stripe_routes
from stripe_standin.webhooks import sign_payload
from stripe_standin.wire import new_id

__all__ = ["RequestIdMiddleware", "StandinConfig", "create_app", "sign_payload"]


class RequestIdMiddleware:
    """Give every request a ``req_...`` id (``request.state.request_id``, ``Request-Id``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req", 14)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("Request-Id", request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(config: StandinConfig) -> FastAPI:
    """A new stand-in app with its own state (loaded from ``config.state_file`` when set)."""
    svc = Standin(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await svc.aclose()

    app = FastAPI(title="Stripe stand-in", lifespan=lifespan, docs_url="/_standin/docs",
                  redoc_url=None, openapi_url="/_standin/openapi.json")
    app.state.standin = svc
    app.add_middleware(RequestIdMiddleware)
    sessions = checkout_session_routes(app, svc)  # before the /v1 catch-all
    stripe_routes(app, svc)
    control_routes(app, svc)
    connect_control_routes(app, svc)
    checkout_routes(app, svc)
    session_page_routes(app, sessions)
    return app
