"""A local, Stripe-compatible stand-in for the slice of the API walletflow uses.

* ``/v1/payment_intents`` (create, retrieve, cancel), ``/v1/refunds`` (create, retrieve) and
  ``/v1/payouts`` (create, retrieve) speak Stripe's wire format: form-encoded bodies, Bearer auth,
  Idempotency-Key semantics, Stripe-shaped errors; the official SDK talks to it unchanged.
* Events are signed exactly like Stripe's (``Stripe-Signature: t=...,v1=...``) and delivered in
  background tasks with retries.
* ``/_standin/...`` is a JSON control API for dev and tests: move payments, refunds and payouts
  to their final states, inject faults, inspect stats, the call log, events and deliveries, re-sign
  or re-deliver events.
* ``/checkout/{id}`` is a tiny hosted "payment page" for humans in the dev stack.

All state belongs to the app instance made by `create_app`; two apps never share anything."""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import hmac
import html
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import httpx
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, model_validator
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stripe_standin.store import (
    JSON,
    StandinError,
    Store,
    StoredEvent,
    format_amount,
    new_id,
    parse_params,
)

logger = logging.getLogger("stripe_standin")

CREATE = "payment_intents.create"
RETRIEVE = "payment_intents.retrieve"
CANCEL = "payment_intents.cancel"
REFUND_CREATE = "refunds.create"
REFUND_RETRIEVE = "refunds.retrieve"
PAYOUT_CREATE = "payouts.create"
PAYOUT_RETRIEVE = "payouts.retrieve"
WEBHOOK = "webhook"
API_OPERATIONS = (CREATE, RETRIEVE, CANCEL, REFUND_CREATE, REFUND_RETRIEVE, PAYOUT_CREATE,
                  PAYOUT_RETRIEVE)
API_MODES = ("error_500", "error_400", "timeout", "delay")
WEBHOOK_MODES = ("drop", "duplicate")


@dataclass
class StandinConfig:
    webhook_url: str | None = None
    # The first is current; with several, every delivery carries one v1= signature per secret.
    webhook_secrets: list[str] = field(default_factory=list)
    api_key_prefix: str = "sk_"
    public_url: str = "http://127.0.0.1:12111"
    state_file: str | None = None
    webhook_retry_delays: tuple[float, ...] = (0.5, 1, 2, 4, 8)
    webhook_timeout_seconds: float = 10.0
    # Resolve every refund as succeeded right after it is created (the create answer still
    # says "pending"; refund.updated and charge.refunded follow), for the dev stack.
    auto_succeed_refunds: bool = False
    # Mark every payout paid right after it is created (the create answer still says "pending";
    # payout.updated and payout.paid follow), for the dev stack.
    auto_pay_payouts: bool = False


def sign_payload(payload: str, secrets: list[str], timestamp: int | None = None) -> str:
    """The Stripe-Signature header for ``payload``: ``t=<ts>,v1=<hmac>[,v1=<hmac>...]`` where
    each v1 is HMAC-SHA256 (hex) of ``f"{t}.{payload}"`` under one secret."""
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign a payload")
    t = int(time.time()) if timestamp is None else int(timestamp)
    signed = f"{t}.{payload}".encode()
    signatures = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets]
    return ",".join([f"t={t}", *(f"v1={sig}" for sig in signatures)])


# --- faults ---------------------------------------------------------------------------------------

class FaultMatch(BaseModel):
    flow_id: str | None = None


class FaultSpec(BaseModel):
    operation: Literal["payment_intents.create", "payment_intents.retrieve",
                       "payment_intents.cancel", "refunds.create", "refunds.retrieve",
                       "payouts.create", "payouts.retrieve", "webhook"]
    mode: Literal["error_500", "error_400", "timeout", "delay", "drop", "duplicate"]
    count: int = Field(1, ge=1)
    delay_seconds: float = Field(5.0, ge=0, le=600)
    copies: int = Field(2, ge=1, le=20)
    match: FaultMatch | None = None

    @model_validator(mode="after")
    def _mode_fits_operation(self) -> FaultSpec:
        allowed = WEBHOOK_MODES if self.operation == WEBHOOK else API_MODES
        if self.mode not in allowed:
            raise ValueError(f"mode {self.mode!r} does not apply to {self.operation!r}; "
                             f"use one of {', '.join(allowed)}")
        return self


@dataclass
class Fault:
    id: str
    spec: FaultSpec
    remaining: int

    def to_json(self) -> JSON:
        return {"id": self.id, **self.spec.model_dump(), "remaining": self.remaining}


class Faults:
    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, spec: FaultSpec) -> Fault:
        fault = Fault(new_id("fault", 12), spec, spec.count)
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def snapshot(self) -> list[JSON]:
        return [f.to_json() for f in self._faults]

    def take(self, operation: str, flow_id: str | None) -> FaultSpec | None:
        """Consume one use of the oldest fault matching this call or event."""
        for fault in self._faults:
            wanted = fault.spec.match.flow_id if fault.spec.match else None
            if fault.spec.operation == operation and (wanted is None or wanted == flow_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault.spec
        return None


class ConfigUpdate(BaseModel):
    webhook_url: str | None = None
    webhook_secrets: list[str] | None = None


# --- the stand-in ---------------------------------------------------------------------------------

def _new_counters() -> dict[str, dict[str, int]]:
    return {op: {"calls": 0, "faults": 0} for op in (*API_OPERATIONS, WEBHOOK)}


async def _sleep_unless_disconnected(request: Request, seconds: float) -> None:
    """Sleep, but stop early once the client hung up (so a shutdown is not held up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(0.05, remaining))


def _params_flow_id(params: JSON) -> str | None:
    metadata = params.get("metadata")
    flow_id = metadata.get("flow_id") if isinstance(metadata, dict) else None
    return flow_id if isinstance(flow_id, str) and flow_id else None


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class Outcome:
    status: int
    body: JSON
    events: list[StoredEvent] = field(default_factory=list)
    mutated: bool = False
    replayable: bool = True


class Standin:
    """All state and behaviour of one stand-in app."""

    def __init__(self, config: StandinConfig) -> None:
        self.config = replace(config, webhook_secrets=list(config.webhook_secrets),
                              webhook_retry_delays=tuple(config.webhook_retry_delays))
        self.store = Store(config.state_file)
        self.lock = asyncio.Lock()
        self.faults = Faults()
        self.stats = _new_counters()
        self.flow_stats: dict[str, dict[str, dict[str, int]]] = {}
        self.deliveries: deque[JSON] = deque(maxlen=10_000)
        self.calls: deque[JSON] = deque(maxlen=10_000)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    # bookkeeping

    def count(self, operation: str, flow_id: str | None, *, fault: bool = False) -> None:
        key = "faults" if fault else "calls"
        self.stats[operation][key] += 1
        if flow_id is not None:
            self.flow_stats.setdefault(flow_id, _new_counters())[operation][key] += 1

    def log_call(self, operation: str, key: str | None, flow_id: str | None,
                 request_id: str) -> JSON:
        """Append a call-log entry (its outcome is filled in once the call is answered)."""
        entry: JSON = {"operation": operation, "idempotency_key": key, "flow_id": flow_id,
                       "status_code": None, "replayed": False, "fault": None,
                       "request_id": request_id, "at": round(time.time(), 3)}
        self.calls.append(entry)
        return entry

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("stand-in background task failed", exc_info=task.exception())

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def checkout_url(self, pi_id: str) -> str:
        return f"{self.config.public_url.rstrip('/')}/checkout/{pi_id}"

    # auth

    def authenticate(self, request: Request) -> StandinError | None:
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
        if not key.startswith(self.config.api_key_prefix):
            return StandinError(401, "invalid_request_error",
                                f"Invalid API Key provided: {key[:8]}***", code="api_key_invalid")
        return None

    # the Stripe API

    async def api_call(self, request: Request, operation: str,
                       execute: Callable[[JSON, str, str | None], Outcome],
                       flow_of: Callable[[JSON], str | None] | None = None) -> Response:
        """Auth, parameters, fault injection, idempotency, then ``execute`` under the lock.

        ``flow_of(params)`` names the flow that faults match and stats count (default: the
        request's ``metadata[flow_id]``)."""
        request_id: str = request.state.request_id
        denied = self.authenticate(request)
        if denied is not None:
            return _json(denied.body(), denied.status,
                         {"WWW-Authenticate": 'Basic realm="Stripe"'})
        try:
            if request.method == "POST":
                params = parse_params(parse_qsl((await request.body()).decode(),
                                                keep_blank_values=True))
            else:
                params = parse_params(request.query_params.multi_items())
        except (StandinError, UnicodeDecodeError) as e:
            err = e if isinstance(e, StandinError) else StandinError.invalid("Invalid body")
            return _json(err.body(), err.status)

        flow_id = (flow_of or _params_flow_id)(params)
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        self.count(operation, flow_id)
        entry = self.log_call(operation, key, flow_id, request_id)
        response = await self._counted_call(request, operation, execute, params, flow_id, key,
                                            entry)
        entry["status_code"] = response.status_code
        entry["replayed"] = response.headers.get("Idempotent-Replayed") == "true"
        return response

    async def _counted_call(self, request: Request, operation: str,
                            execute: Callable[[JSON, str, str | None], Outcome], params: JSON,
                            flow_id: str | None, key: str | None, entry: JSON) -> Response:
        """Fault injection, idempotency and ``execute`` for a call already counted and logged."""
        request_id: str = request.state.request_id
        fault = self.faults.take(operation, flow_id)
        if fault is not None:
            self.count(operation, flow_id, fault=True)
            entry["fault"] = fault.mode
            logger.info("injecting %s into %s (flow %s)", fault.mode, operation, flow_id)
            if fault.mode != "delay":
                return await self._fault_response(request, fault)

        headers = {"Idempotency-Key": key} if key else {}
        method, path = request.method, request.url.path
        async with self.lock:
            try:
                record = self.store.idempotent_result(key, method, path, params) if key else None
            except StandinError as e:
                return _json(e.body(), e.status, headers)
            if record is not None:
                return _json(record.body, record.status,
                             {**headers, "Idempotent-Replayed": "true",
                              "Original-Request": record.request_id})
            try:
                outcome = execute(params, request_id, key)
            except StandinError as e:
                outcome = Outcome(e.status, e.body(), replayable=e.replayable)
            if key and outcome.replayable:
                self.store.remember(key, method, path, params, outcome.status, outcome.body,
                                    request_id)
            if outcome.mutated or (key and outcome.replayable):
                await self.store.save()
        for event in outcome.events:
            self.dispatch(event)
        if fault is not None:  # "delay": the work is done (and replayable), the answer is late
            await _sleep_unless_disconnected(request, fault.delay_seconds)
        return _json(outcome.body, outcome.status, headers)

    async def _fault_response(self, request: Request, fault: FaultSpec) -> Response:
        if fault.mode == "timeout":
            await _sleep_unless_disconnected(request, fault.delay_seconds)
        if fault.mode == "error_400":
            err = StandinError.invalid("Injected fault: the request was rejected.",
                                       code="parameter_invalid")
        else:
            err = StandinError(500, "api_error",
                               "An unknown error occurred (injected fault by the stand-in).")
        return _json(err.body(), err.status)

    def create_payment_intent(self, params: JSON, request_id: str, key: str | None) -> Outcome:
        pi = self.store.create_payment_intent(params)
        logger.info("payment intent %s (%s %s): checkout at %s", pi["id"], pi["amount"],
                    pi["currency"], self.checkout_url(pi["id"]))
        return Outcome(200, copy.deepcopy(pi), mutated=True)

    def pi_flow_id(self, pi_id: str | None) -> str | None:
        target = self.store.payment_intents.get(pi_id) if isinstance(pi_id, str) else None
        return (target or {}).get("metadata", {}).get("flow_id")

    def retrieve_payment_intent(self, pi_id: str) -> Callable[[JSON, str, str | None], Outcome]:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            return Outcome(200, copy.deepcopy(self.store.get_payment_intent(pi_id)),
                           replayable=False)
        return execute

    def cancel_payment_intent(self, pi_id: str) -> Callable[[JSON, str, str | None], Outcome]:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            pi = self.store.cancel_payment_intent(pi_id, params)
            event = self.record_event("payment_intent.canceled", pi, request_id, key)
            return Outcome(200, copy.deepcopy(pi), [event], mutated=True)
        return execute

    def refund_create_flow_id(self, params: JSON) -> str | None:
        """The refund's ``metadata[flow_id]``, else its payment intent's."""
        return _params_flow_id(params) or self.pi_flow_id(params.get("payment_intent"))

    def refund_flow_id(self, re_id: str) -> str | None:
        refund = self.store.refunds.get(re_id)
        return self.store.refund_flow_id(refund) if refund is not None else None

    def create_refund(self, params: JSON, request_id: str, key: str | None) -> Outcome:
        refund = self.store.create_refund(params)
        body = copy.deepcopy(refund)
        logger.info("refund %s of %s: %s %s", refund["id"], refund["payment_intent"],
                    refund["amount"], refund["currency"])
        events: list[StoredEvent] = []
        if self.config.auto_succeed_refunds:
            events = self.resolve_refund_locked(refund["id"], "succeeded")
        return Outcome(200, body, events, mutated=True)

    def retrieve_refund(self, re_id: str) -> Callable[[JSON, str, str | None], Outcome]:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            return Outcome(200, copy.deepcopy(self.store.get_refund(re_id)), replayable=False)
        return execute

    def resolve_refund_locked(self, re_id: str,
                              outcome: Literal["succeeded", "failed"]) -> list[StoredEvent]:
        """Resolve a pending refund (the caller holds the lock) and record its events:
        refund.updated + charge.refunded, or refund.updated + refund.failed."""
        refund = self.store.resolve_refund(re_id, outcome)
        flow_id = self.store.refund_flow_id(refund)
        events = [self.record_event("refund.updated", refund, flow_hint=flow_id)]
        if outcome == "succeeded":
            pi = self.store.get_payment_intent(refund["payment_intent"])
            events.append(self.record_event("charge.refunded", self.store.charge_of(pi),
                                            flow_hint=flow_id))
        else:
            events.append(self.record_event("refund.failed", refund, flow_hint=flow_id))
        return events

    async def resolve_refund(self, re_id: str, outcome: Literal["succeeded", "failed"]) -> JSON:
        async with self.lock:
            events = self.resolve_refund_locked(re_id, outcome)
            refund = copy.deepcopy(self.store.get_refund(re_id))
            await self.store.save()
        for event in events:
            self.dispatch(event)
        return {"refund": refund, "events": [e.event for e in events]}

    # payouts

    def payout_flow_id(self, po_id: str) -> str | None:
        payout = self.store.payouts.get(po_id)
        return (payout or {}).get("metadata", {}).get("flow_id")

    def create_payout(self, params: JSON, request_id: str, key: str | None) -> Outcome:
        payout = self.store.create_payout(params)
        body = copy.deepcopy(payout)
        logger.info("payout %s: %s to %s", payout["id"],
                    format_amount(payout["amount"], payout["currency"]), payout["destination"])
        events: list[StoredEvent] = []
        if self.config.auto_pay_payouts:
            events = self.resolve_payout_locked(payout["id"], "paid")
        return Outcome(200, body, events, mutated=True)

    def retrieve_payout(self, po_id: str) -> Callable[[JSON, str, str | None], Outcome]:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            return Outcome(200, copy.deepcopy(self.store.get_payout(po_id)), replayable=False)
        return execute

    def resolve_payout_locked(self, po_id: str,
                              outcome: Literal["paid", "failed"]) -> list[StoredEvent]:
        """Resolve a pending payout (the caller holds the lock) and record its events:
        payout.updated + payout.paid, or payout.updated + payout.failed."""
        payout = self.store.resolve_payout(po_id, outcome)
        return [self.record_event("payout.updated", payout),
                self.record_event(f"payout.{outcome}", payout)]

    async def resolve_payout(self, po_id: str, outcome: Literal["paid", "failed"]) -> JSON:
        async with self.lock:
            events = self.resolve_payout_locked(po_id, outcome)
            payout = copy.deepcopy(self.store.get_payout(po_id))
            await self.store.save()
        for event in events:
            self.dispatch(event)
        return {"payout": payout, "events": [e.event for e in events]}

    # control transitions (control API and checkout page)

    async def transition(self, pi_id: str, action: Literal["succeed", "fail"]) -> JSON:
        async with self.lock:
            if action == "succeed":
                pi = self.store.succeed_payment_intent(pi_id)
                event = self.record_event("payment_intent.succeeded", pi)
            else:
                pi = self.store.fail_payment_intent(pi_id)
                event = self.record_event("payment_intent.payment_failed", pi)
            await self.store.save()
        self.dispatch(event)
        return {"payment_intent": copy.deepcopy(pi), "event": event.event}

    # events and webhooks

    def record_event(self, type_: str, obj: JSON, request_id: str | None = None,
                     idempotency_key: str | None = None,
                     flow_hint: str | None = None) -> StoredEvent:
        return self.store.record_event(type_, obj, request_id=request_id,
                                       idempotency_key=idempotency_key, flow_hint=flow_hint,
                                       pending_webhooks=1 if self.config.webhook_url else 0)

    def dispatch(self, event: StoredEvent) -> None:
        """Apply webhook faults, then deliver in the background (the caller does not wait)."""
        self.count(WEBHOOK, event.flow_id)
        if not self.config.webhook_url:
            return
        fault = self.faults.take(WEBHOOK, event.flow_id)
        copies = 1
        if fault is not None:
            self.count(WEBHOOK, event.flow_id, fault=True)
            if fault.mode == "drop":
                logger.info("dropping %s %s (injected fault)", event.event["type"], event.id)
                return
            copies = fault.copies
        self.spawn(self._deliver(event, copies))

    async def _deliver(self, event: StoredEvent, copies: int) -> None:
        for copy_number in range(1, copies + 1):
            await self._deliver_with_retries(event, copy_number)

    async def _deliver_with_retries(self, event: StoredEvent, copy_number: int) -> None:
        delays = self.config.webhook_retry_delays
        for attempt in range(1, len(delays) + 2):
            result = await self.attempt_delivery(event, attempt=attempt, copy_number=copy_number)
            if result is None or result["ok"]:
                return
            if attempt <= len(delays):
                await asyncio.sleep(delays[attempt - 1])
        logger.warning("giving up delivering %s after %d attempts", event.id, len(delays) + 1)

    async def attempt_delivery(self, event: StoredEvent, *, attempt: int = 1,
                               copy_number: int = 1) -> JSON | None:
        """POST the event once to the current webhook URL; record and return the attempt (None
        when no URL or secret is configured)."""
        url, secrets = self.config.webhook_url, list(self.config.webhook_secrets)
        if not url or not secrets:
            if url:
                logger.warning("not delivering %s: no webhook secret configured", event.id)
            return None
        if self._http is None:
            self._http = httpx.AsyncClient()
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                   "Stripe-Signature": sign_payload(event.payload, secrets)}
        status: int | None = None
        error: str | None = None
        try:
            response = await self._http.post(url, content=event.payload.encode(), headers=headers,
                                             timeout=self.config.webhook_timeout_seconds)
            status = response.status_code
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        ok = status is not None and 200 <= status < 300
        result: JSON = {"event_id": event.id, "event_type": event.event["type"], "url": url,
                        "attempt": attempt, "copy": copy_number, "status_code": status,
                        "error": error, "ok": ok, "time": round(time.time(), 3)}
        self.deliveries.append(result)
        if not ok:
            logger.info("webhook %s to %s failed: %s", event.id, url, error or status)
        return result


# --- ASGI plumbing --------------------------------------------------------------------------------

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
    _stripe_routes(app, svc)
    _control_routes(app, svc)
    _checkout_routes(app, svc)
    return app


def _stripe_routes(app: FastAPI, svc: Standin) -> None:
    @app.post("/v1/payment_intents")
    async def create_payment_intent(request: Request) -> Response:
        return await svc.api_call(request, CREATE, svc.create_payment_intent)

    @app.get("/v1/payment_intents/{pi_id}")
    async def retrieve_payment_intent(request: Request, pi_id: str) -> Response:
        return await svc.api_call(request, RETRIEVE, svc.retrieve_payment_intent(pi_id),
                                  lambda _: svc.pi_flow_id(pi_id))

    @app.post("/v1/payment_intents/{pi_id}/cancel")
    async def cancel_payment_intent(request: Request, pi_id: str) -> Response:
        return await svc.api_call(request, CANCEL, svc.cancel_payment_intent(pi_id),
                                  lambda _: svc.pi_flow_id(pi_id))

    @app.post("/v1/refunds")
    async def create_refund(request: Request) -> Response:
        return await svc.api_call(request, REFUND_CREATE, svc.create_refund,
                                  svc.refund_create_flow_id)

    @app.get("/v1/refunds/{re_id}")
    async def retrieve_refund(request: Request, re_id: str) -> Response:
        return await svc.api_call(request, REFUND_RETRIEVE, svc.retrieve_refund(re_id),
                                  lambda _: svc.refund_flow_id(re_id))

    @app.post("/v1/payouts")
    async def create_payout(request: Request) -> Response:
        return await svc.api_call(request, PAYOUT_CREATE, svc.create_payout)

    @app.get("/v1/payouts/{po_id}")
    async def retrieve_payout(request: Request, po_id: str) -> Response:
        return await svc.api_call(request, PAYOUT_RETRIEVE, svc.retrieve_payout(po_id),
                                  lambda _: svc.payout_flow_id(po_id))

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "DELETE"])
    async def unrecognized(request: Request, rest: str) -> Response:
        err = StandinError(404, "invalid_request_error",
                           f"Unrecognized request URL ({request.method}: {request.url.path}). "
                           "The Stripe stand-in implements only payment intents, refunds "
                           "and payouts.")
        return _json(err.body(), err.status)


def _control_error(e: StandinError) -> JSONResponse:
    return _json(e.body(), e.status)


def _control_routes(app: FastAPI, svc: Standin) -> None:
    @app.post("/_standin/payment_intents/{pi_id}/succeed")
    async def succeed(pi_id: str) -> Response:
        try:
            return _json(await svc.transition(pi_id, "succeed"))
        except StandinError as e:
            return _control_error(e)

    @app.post("/_standin/payment_intents/{pi_id}/fail")
    async def fail(pi_id: str) -> Response:
        try:
            return _json(await svc.transition(pi_id, "fail"))
        except StandinError as e:
            return _control_error(e)

    @app.get("/_standin/payment_intents")
    async def list_payment_intents(request: Request) -> Response:
        """Filter with ``?metadata[key]=value`` (any key) or ``?flow_id=``/``?status=``."""
        wanted = {k[len("metadata["):-1]: v for k, v in request.query_params.items()
                  if k.startswith("metadata[") and k.endswith("]")}
        if "flow_id" in request.query_params:
            wanted["flow_id"] = request.query_params["flow_id"]
        status = request.query_params.get("status")
        data = [copy.deepcopy(pi) for pi in svc.store.payment_intents.values()
                if all(pi["metadata"].get(k) == v for k, v in wanted.items())
                and (status is None or pi["status"] == status)]
        return _json({"data": data})

    @app.post("/_standin/refunds/{re_id}/succeed")
    async def succeed_refund(re_id: str) -> Response:
        try:
            return _json(await svc.resolve_refund(re_id, "succeeded"))
        except StandinError as e:
            return _control_error(e)

    @app.post("/_standin/refunds/{re_id}/fail")
    async def fail_refund(re_id: str) -> Response:
        try:
            return _json(await svc.resolve_refund(re_id, "failed"))
        except StandinError as e:
            return _control_error(e)

    @app.get("/_standin/refunds")
    async def list_refunds(payment_intent: str | None = None, flow_id: str | None = None,
                           status: str | None = None) -> Response:
        """Filter with ``?payment_intent=``, ``?flow_id=`` (the refund's, else its payment
        intent's) and ``?status=``; oldest first."""
        data = [copy.deepcopy(r) for r in svc.store.refunds.values()
                if (payment_intent is None or r["payment_intent"] == payment_intent)
                and (flow_id is None or svc.store.refund_flow_id(r) == flow_id)
                and (status is None or r["status"] == status)]
        return _json({"data": data})

    @app.post("/_standin/payouts/{po_id}/paid")
    async def pay_payout(po_id: str) -> Response:
        try:
            return _json(await svc.resolve_payout(po_id, "paid"))
        except StandinError as e:
            return _control_error(e)

    @app.post("/_standin/payouts/{po_id}/fail")
    async def fail_payout(po_id: str) -> Response:
        try:
            return _json(await svc.resolve_payout(po_id, "failed"))
        except StandinError as e:
            return _control_error(e)

    @app.get("/_standin/payouts")
    async def list_payouts(flow_id: str | None = None, status: str | None = None,
                           destination: str | None = None) -> Response:
        """Filter with ``?flow_id=`` (the payout's ``metadata.flow_id``), ``?status=`` and
        ``?destination=``; oldest first."""
        data = [copy.deepcopy(po) for po in svc.store.payouts.values()
                if (flow_id is None or po["metadata"].get("flow_id") == flow_id)
                and (status is None or po["status"] == status)
                and (destination is None or po["destination"] == destination)]
        return _json({"data": data})

    @app.get("/_standin/calls")
    async def list_calls(operation: str | None = None, flow_id: str | None = None,
                         idempotency_key: str | None = None) -> Response:
        """The API call log (authenticated calls, oldest first): one entry per call with its
        operation, idempotency_key, flow_id, status_code (null while in flight), replayed,
        fault (the injected mode or null), request_id and at (unix time)."""
        data = [dict(c) for c in svc.calls
                if (operation is None or c["operation"] == operation)
                and (flow_id is None or c["flow_id"] == flow_id)
                and (idempotency_key is None or c["idempotency_key"] == idempotency_key)]
        return _json({"data": data})

    @app.delete("/_standin/calls")
    async def clear_calls() -> Response:
        svc.calls.clear()
        return _json({"data": []})

    @app.get("/_standin/stats")
    async def stats(flow_id: str | None = None) -> Response:
        if flow_id is not None:
            return _json(svc.flow_stats.get(flow_id, _new_counters()))
        return _json(svc.stats)

    @app.delete("/_standin/stats")
    async def reset_stats() -> Response:
        svc.stats = _new_counters()
        svc.flow_stats.clear()
        return _json(svc.stats)

    @app.post("/_standin/faults")
    async def add_fault(spec: FaultSpec) -> Response:
        return _json(svc.faults.add(spec).to_json(), 201)

    @app.get("/_standin/faults")
    async def list_faults() -> Response:
        return _json({"data": svc.faults.snapshot()})

    @app.delete("/_standin/faults")
    async def clear_faults() -> Response:
        svc.faults.clear()
        return _json({"data": []})

    @app.get("/_standin/events")
    async def list_events(payment_intent: str | None = None, flow_id: str | None = None,
                          type_: Annotated[str | None, Query(alias="type")] = None) -> Response:
        data = [e.event for e in svc.store.events.values()
                if (payment_intent is None or e.payment_intent_id == payment_intent)
                and (flow_id is None or e.flow_id == flow_id)
                and (type_ is None or e.event["type"] == type_)]
        return _json({"data": data})

    def stored_event(evt_id: str) -> StoredEvent:
        event = svc.store.events.get(evt_id)
        if event is None:
            raise StandinError.missing("event", evt_id, param="id")
        return event

    @app.get("/_standin/events/{evt_id}/signed")
    async def signed_event(evt_id: str, timestamp: int | None = None,
                           secret: Annotated[list[str] | None, Query()] = None) -> Response:
        """The exact payload and headers of a delivery, signed now (or at ``timestamp``) with
        the configured secrets (or the ``secret`` query values) — for replays and forgeries."""
        try:
            event = stored_event(evt_id)
        except StandinError as e:
            return _control_error(e)
        secrets = secret or svc.config.webhook_secrets
        if not secrets:
            return _json({"detail": "no webhook secret configured; pass ?secret="}, 409)
        return _json({"payload": event.payload,
                      "headers": {"Stripe-Signature": sign_payload(event.payload, secrets,
                                                                   timestamp),
                                  "Content-Type": "application/json"}})

    @app.post("/_standin/events/{evt_id}/deliver")
    async def redeliver(evt_id: str) -> Response:
        """Send the event once, now, with a fresh signature (no faults, no retries); answers
        with the recorded attempt."""
        try:
            event = stored_event(evt_id)
        except StandinError as e:
            return _control_error(e)
        result = await svc.attempt_delivery(event)
        if result is None:
            return _json({"detail": "no webhook_url/webhook_secrets configured"}, 409)
        return _json({"delivery": result})

    @app.get("/_standin/deliveries")
    async def deliveries(event_id: str | None = None) -> Response:
        return _json({"data": [d for d in svc.deliveries
                               if event_id is None or d["event_id"] == event_id]})

    @app.get("/_standin/config")
    async def get_config() -> Response:
        return _json({"webhook_url": svc.config.webhook_url,
                      "webhook_secrets": svc.config.webhook_secrets})

    @app.put("/_standin/config")
    async def put_config(update: ConfigUpdate) -> Response:
        if "webhook_url" in update.model_fields_set:
            svc.config.webhook_url = update.webhook_url
        if "webhook_secrets" in update.model_fields_set:
            svc.config.webhook_secrets = list(update.webhook_secrets or [])
        return await get_config()


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:32em;margin:3em auto}"
        "button{font-size:1.1em;margin-right:1em;padding:.4em 1.2em}</style></head>"
        f"<body>{body}</body></html>", status_code=status)


def _checkout_routes(app: FastAPI, svc: Standin) -> None:
    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        rows = "".join(
            f"<li><a href='{html.escape(svc.checkout_url(pi['id']))}'>{html.escape(pi['id'])}</a>"
            f" {html.escape(format_amount(pi['amount'], pi['currency']))}"
            f" — {html.escape(pi['status'])}</li>"
            for pi in reversed(list(svc.store.payment_intents.values())))
        return _page("Stripe stand-in", f"<h1>Stripe stand-in</h1><ul>{rows}</ul>")

    @app.get("/checkout/{pi_id}", response_class=HTMLResponse)
    async def checkout(pi_id: str) -> HTMLResponse:
        pi = svc.store.payment_intents.get(pi_id)
        if pi is None:
            return _page("Not found", f"<h1>No such payment: {html.escape(pi_id)}</h1>", 404)
        pid = html.escape(pi_id)
        buttons = ""
        if pi["status"] not in ("succeeded", "canceled"):
            buttons = (f"<form method='post' action='/checkout/{pid}/pay' style='display:inline'>"
                       "<button type='submit'>Pay</button></form>"
                       f"<form method='post' action='/checkout/{pid}/decline' "
                       "style='display:inline'><button type='submit'>Decline</button></form>")
        description = html.escape(pi.get("description") or "")
        return _page("Checkout", (
            f"<h1>Pay {html.escape(format_amount(pi['amount'], pi['currency']))}</h1>"
            f"<p>{description}</p><p>Payment <code>{pid}</code>: "
            f"status <strong>{html.escape(pi['status'])}</strong></p>{buttons}"))

    async def act(pi_id: str, action: Literal["succeed", "fail"]) -> HTMLResponse:
        back = f"<p><a href='/checkout/{html.escape(pi_id)}'>Back to the payment</a></p>"
        try:
            result = await svc.transition(pi_id, action)
        except StandinError as e:
            return _page("Not possible", f"<h1>Not possible</h1><p>{html.escape(e.message)}</p>"
                         f"{back}", e.status)
        pi = result["payment_intent"]
        headline = "Payment succeeded" if action == "succeed" else "Payment declined"
        return _page(headline, f"<h1>{headline}</h1><p>{html.escape(pi['id'])}: "
                     f"{html.escape(format_amount(pi['amount'], pi['currency']))}, "
                     f"status <strong>{html.escape(pi['status'])}</strong></p>{back}")

    @app.post("/checkout/{pi_id}/pay", response_class=HTMLResponse)
    async def pay(pi_id: str) -> HTMLResponse:
        return await act(pi_id, "succeed")

    @app.post("/checkout/{pi_id}/decline", response_class=HTMLResponse)
    async def decline(pi_id: str) -> HTMLResponse:
        return await act(pi_id, "fail")
