"""The Stripe API under ``/v1``: payment intents (create, retrieve, cancel, list), refunds
(create, retrieve, list) and payouts (create, retrieve, list) in Stripe's wire format —
API-key auth (Bearer or Basic), form-encoded parameters, Idempotency-Key replays,
Stripe-shaped errors — with call counting, the call log and injected API faults around each
call."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from stripe_standin.calls import (
    CANCEL,
    CREATE,
    LIST,
    PAYOUT_CREATE,
    PAYOUT_LIST,
    PAYOUT_RETRIEVE,
    REFUND_CREATE,
    REFUND_LIST,
    REFUND_RETRIEVE,
    RETRIEVE,
)
from stripe_standin.connect_ops import ConnectOps
from stripe_standin.faults import FaultSpec
from stripe_standin.listing import list_objects
from stripe_standin.params import parse_params
from stripe_standin.service import Executor, Outcome, Standin, params_flow_id
from stripe_standin.wire import JSON, StandinError

logger = logging.getLogger("stripe_standin")

FlowOf = Callable[[JSON], str | None]


def json_response(body: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(error: StandinError, headers: dict[str, str] | None = None) -> JSONResponse:
    return json_response(error.body(), error.status, headers)


async def _sleep_unless_disconnected(request: Request, seconds: float) -> None:
    """Sleep, but stop early once the client hung up (so a shutdown is not held up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(0.05, remaining))


def authenticate(request: Request, api_key_prefix: str) -> StandinError | None:
    """None when the request carries an API key with the configured prefix, else the 401."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    key = ""
    if scheme.lower() == "bearer":
        key = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            key = base64.b64decode(credentials).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    if not key:
        return StandinError(401, "invalid_request_error",
                            "You did not provide an API key. You need to provide your API key "
                            "in the Authorization header, using Bearer auth (e.g. "
                            "'Authorization: Bearer YOUR_SECRET_KEY').")
    if not key.startswith(api_key_prefix):
        return StandinError(401, "invalid_request_error",
                            f"Invalid API Key provided: {key[:8]}***", code="api_key_invalid")
    return None


async def _request_params(request: Request) -> JSON:
    """The form body of a POST, the query of anything else, as nested parameters."""
    try:
        if request.method == "POST":
            return parse_params(parse_qsl((await request.body()).decode(),
                                          keep_blank_values=True))
        return parse_params(request.query_params.multi_items())
    except UnicodeDecodeError as e:
        raise StandinError.invalid("Invalid body") from e


async def api_call(svc: Standin, request: Request, operation: str, execute: Executor,
                   flow_of: FlowOf | None = None) -> Response:
    """Auth, parameters, fault injection, idempotency, then ``execute`` under the lock.

    ``flow_of(params)`` names the flow that faults match and stats count (default: the
    request's ``metadata[flow_id]``)."""
    denied = authenticate(request, svc.config.api_key_prefix)
    if denied is not None:
        return error_response(denied, {"WWW-Authenticate": 'Basic realm="Stripe"'})
    try:
        params = await _request_params(request)
    except StandinError as e:
        return error_response(e)

    flow_id = (flow_of or params_flow_id)(params)
    key = request.headers.get("idempotency-key") if request.method == "POST" else None
    svc.calls.count(operation, flow_id)
    entry = svc.calls.log_call(operation, key, flow_id, request.state.request_id)
    entry["stripe_account"] = request.headers.get("stripe-account")  # Connect
    response = await _counted_call(svc, request, operation, execute, params, flow_id, key, entry)
    entry["status_code"] = response.status_code
    entry["replayed"] = response.headers.get("Idempotent-Replayed") == "true"
    return response


async def _counted_call(svc: Standin, request: Request, operation: str, execute: Executor,
                        params: JSON, flow_id: str | None, key: str | None,
                        entry: JSON) -> Response:
    """Fault injection, idempotency and ``execute`` for a call already counted and logged."""
    fault = svc.faults.take(operation, flow_id)
    if fault is not None:
        svc.calls.count(operation, flow_id, fault=True)
        entry["fault"] = fault.mode
        logger.info("injecting %s into %s (flow %s)", fault.mode, operation, flow_id)
        if fault.mode != "delay":
            return await _fault_response(request, fault)

    headers = {"Idempotency-Key": key} if key else {}
    result = await _execute_locked(svc, request, execute, params, key, headers)
    if isinstance(result, Response):
        return result
    for event in result.events:
        svc.dispatch(event)
    if fault is not None:  # "delay": the work is done (and replayable), the answer is late
        await _sleep_unless_disconnected(request, fault.delay_seconds)
    return json_response(result.body, result.status, headers)


async def _execute_locked(svc: Standin, request: Request, execute: Executor, params: JSON,
                          key: str | None, headers: dict[str, str]) -> Outcome | Response:
    """Under the lock: the answer kept under ``key`` (a replay, or an idempotency_error), else
    ``execute``'s outcome, kept under ``key`` when replayable and persisted."""
    method, path = request.method, request.url.path
    request_id: str = request.state.request_id
    async with svc.lock:
        try:
            record = svc.store.idempotent_result(key, method, path, params) if key else None
        except StandinError as e:
            return error_response(e, headers)
        if record is not None:
            return json_response(record.body, record.status,
                                 {**headers, "Idempotent-Replayed": "true",
                                  "Original-Request": record.request_id})
        try:
            outcome = execute(params, request_id, key)
        except StandinError as e:
            outcome = Outcome(e.status, e.body(), replayable=e.replayable)
        if key and outcome.replayable:
            svc.store.remember(key, method, path, params, outcome.status, outcome.body,
                               request_id)
        if outcome.mutated or (key and outcome.replayable):
            await svc.store.save()
    return outcome


async def _fault_response(request: Request, fault: FaultSpec) -> Response:
    if fault.mode == "timeout":
        await _sleep_unless_disconnected(request, fault.delay_seconds)
    if fault.mode == "error_400":
        err = StandinError.invalid("Injected fault: the request was rejected.",
                                   code="parameter_invalid")
    else:
        err = StandinError(500, "api_error",
                           "An unknown error occurred (injected fault by the stand-in).")
    return error_response(err)


def stripe_routes(app: FastAPI, svc: Standin) -> None:
    """Register the ``/v1`` routes (and a Stripe-shaped 404 for every other ``/v1`` path)."""
    @app.post("/v1/payment_intents")
    async def create_payment_intent(request: Request) -> Response:
        return await api_call(svc, request, CREATE, svc.create_payment_intent)

    @app.get("/v1/payment_intents/{pi_id}")
    async def retrieve_payment_intent(request: Request, pi_id: str) -> Response:
        return await api_call(svc, request, RETRIEVE, svc.retrieve_payment_intent(pi_id),
                              lambda _: svc.pi_flow_id(pi_id))

    @app.post("/v1/payment_intents/{pi_id}/cancel")
    async def cancel_payment_intent(request: Request, pi_id: str) -> Response:
        return await api_call(svc, request, CANCEL, svc.cancel_payment_intent(pi_id),
                              lambda _: svc.pi_flow_id(pi_id))

    @app.post("/v1/refunds")
    async def create_refund(request: Request) -> Response:
        return await api_call(svc, request, REFUND_CREATE, svc.create_refund,
                              svc.refund_create_flow_id)

    @app.get("/v1/refunds/{re_id}")
    async def retrieve_refund(request: Request, re_id: str) -> Response:
        return await api_call(svc, request, REFUND_RETRIEVE, svc.retrieve_refund(re_id),
                              lambda _: svc.refund_flow_id(re_id))

    @app.post("/v1/payouts")
    async def create_payout(request: Request) -> Response:
        account = request.headers.get("stripe-account")  # Connect: a connected account's
        return await api_call(svc, request, PAYOUT_CREATE, ConnectOps(svc).create_payout(
            account) if account else svc.create_payout)

    @app.get("/v1/payouts/{po_id}")
    async def retrieve_payout(request: Request, po_id: str) -> Response:
        return await api_call(svc, request, PAYOUT_RETRIEVE, ConnectOps(svc).retrieve_payout(
            request.headers.get("stripe-account"), po_id), lambda _: svc.payout_flow_id(po_id))

    from stripe_standin.connect_routes import connect_api_routes  # it imports this module
    connect_api_routes(app, svc)

    list_routes(app, svc)

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "DELETE"])
    async def unrecognized(request: Request, rest: str) -> Response:
        return error_response(StandinError(
            404, "invalid_request_error",
            f"Unrecognized request URL ({request.method}: {request.url.path}). "
            "The Stripe stand-in implements only payment intents, refunds and payouts."))


def list_routes(app: FastAPI, svc: Standin) -> None:
    """``GET /v1/payment_intents``, ``/v1/refunds``, ``/v1/payouts``: Stripe's list calls
    (``stripe_standin/listing.py``), counted and fault-injectable like the other calls."""
    def lister(objects: Callable[[], dict[str, JSON]], url: str, kind: str) -> Executor:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            return Outcome(200, list_objects(objects(), params, url, kind), replayable=False)
        return execute

    @app.get("/v1/payment_intents")
    async def list_payment_intents(request: Request) -> Response:
        return await api_call(svc, request, LIST, lister(
            lambda: svc.store.payment_intents, "/v1/payment_intents", "payment_intent"),
            lambda _: None)

    @app.get("/v1/refunds")
    async def list_refunds(request: Request) -> Response:
        return await api_call(svc, request, REFUND_LIST, lister(
            lambda: svc.store.refunds, "/v1/refunds", "refund"), lambda _: None)

    @app.get("/v1/payouts")
    async def list_payouts(request: Request) -> Response:
        return await api_call(svc, request, PAYOUT_LIST, ConnectOps(svc).list_payouts(
            request.headers.get("stripe-account")), lambda _: None)
