"""A local, Razorpay-compatible stand-in for the slice of the API walletflow uses; `create_app`
builds one app from a `RazorpayStandinConfig`.

* ``/v1/orders`` (create, list, fetch, its payments), ``/v1/payments/{id}`` (fetch, refund,
  its refunds) and ``/v1/refunds/{id}`` speak Razorpay's wire format (`api`, rules in `store`).
* Events are signed like Razorpay's (``X-Razorpay-Signature``, ``X-Razorpay-Event-Id``) and
  delivered in background tasks with retries (`webhooks`).
* ``/_standin/...`` is the control API (`control`), ``/checkout/{order_id}`` a hosted page
  (`checkout`); faults in `faults`.

All state belongs to the app instance; two apps never share anything."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from razorpay_standin.api import razorpay_routes
from razorpay_standin.checkout import checkout_routes
from razorpay_standin.config import RazorpayStandinConfig
from razorpay_standin.control import control_routes
from razorpay_standin.service import RazorpayStandin


def create_app(config: RazorpayStandinConfig) -> FastAPI:
    svc = RazorpayStandin(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await svc.aclose()

    app = FastAPI(title="Razorpay stand-in", lifespan=lifespan, docs_url="/_standin/docs",
                  redoc_url=None, openapi_url="/_standin/openapi.json")
    app.state.standin = svc
    razorpay_routes(app, svc)
    control_routes(app, svc)
    checkout_routes(app, svc)
    return app
