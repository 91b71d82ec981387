"""Checkout Sessions as Stripe has them (``mode=payment``): create with ``line_items``
(``price_data``) or ``amount`` + ``currency``, retrieve, expire, list, under
``/v1/checkout/sessions``; a session is paid on its hosted page (``url``, `checkout`) or
through the control API, which creates its PaymentIntent (succeeded, or ``processing`` for an
async payment method) and sends ``checkout.session.completed`` (then
``checkout.session.async_payment_succeeded`` / ``_failed``); at ``expires_at`` an open session
expires (``checkout.session.expired``). Callers of the resource functions hold the lock."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import Response

from stripe_standin import payment_intents
from stripe_standin.calls import SESSION_CREATE, SESSION_EXPIRE, SESSION_LIST, SESSION_RETRIEVE
from stripe_standin.listing import list_objects
from stripe_standin.params import currency_param, int_param, metadata_param, str_param
from stripe_standin.service import Outcome, Standin
from stripe_standin.store import Store, StoredEvent
from stripe_standin.stripe_api import api_call, error_response, json_response
from stripe_standin.wire import JSON, StandinError, new_id, now

MIN_EXPIRY, MAX_EXPIRY, DEFAULT_EXPIRY = 30 * 60, 24 * 3600, 24 * 3600
Paid = Literal["paid", "processing"]


def _line_items_total(params: JSON) -> tuple[int, str]:
    """(amount_total, currency) of ``line_items[n][price_data]`` × quantity, else of the
    stand-in's shortcut ``amount`` + ``currency``."""
    items = params.get("line_items")
    if items is None:
        return int_param(params, "amount"), currency_param(params)
    if not isinstance(items, list) or not items:
        raise StandinError.invalid("Invalid array", code="parameter_invalid", param="line_items")
    total, currencies = 0, set()
    for n, item in enumerate(items):
        data = item.get("price_data") if isinstance(item, dict) else None
        if not isinstance(data, dict):
            raise StandinError.invalid(
                f"Missing required param: line_items[{n}][price_data] (prices are not "
                "implemented by the stand-in).", code="parameter_missing",
                param=f"line_items[{n}][price_data]")
        product = data.get("product_data")
        if not isinstance(product, dict) or not product.get("name"):
            raise StandinError.invalid(
                f"Missing required param: line_items[{n}][price_data][product_data][name].",
                code="parameter_missing", param=f"line_items[{n}][price_data][product_data]")
        total += int_param(data, "unit_amount") * int_param(item, "quantity")
        currencies.add(currency_param(data))
    if len(currencies) != 1:
        raise StandinError.invalid("All line items must share one currency.",
                                   code="parameter_invalid", param="line_items")
    if total < 1:
        raise StandinError.invalid("The total must be at least 1.", code="amount_too_small",
                                   param="line_items")
    return total, currencies.pop()


def _expires_at(params: JSON) -> int:
    if "expires_at" not in params:
        return now() + DEFAULT_EXPIRY
    value = int_param(params, "expires_at")
    if not now() + MIN_EXPIRY <= value <= now() + MAX_EXPIRY:
        raise StandinError.invalid(
            "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout "
            "Session creation.", code="parameter_invalid", param="expires_at")
    return value


def create(store: Store, params: JSON, public_url: str) -> JSON:
    if params.get("mode") != "payment":
        raise StandinError.invalid("Missing or unsupported param: mode (the stand-in has "
                                   "mode=payment only).", code="parameter_invalid", param="mode")
    success_url = str_param(params, "success_url", 5000)
    if success_url is None:
        raise StandinError.invalid("Missing required param: success_url.",
                                   code="parameter_missing", param="success_url")
    amount, currency = _line_items_total(params)
    pi_data = params.get("payment_intent_data") or {}
    if not isinstance(pi_data, dict):
        raise StandinError.invalid("Invalid hash", code="parameter_invalid",
                                   param="payment_intent_data")
    cs_id = new_id("cs_test", 58)
    session: JSON = {
        "id": cs_id, "object": "checkout.session", "amount_subtotal": amount,
        "amount_total": amount, "cancel_url": str_param(params, "cancel_url", 5000),
        "client_reference_id": str_param(params, "client_reference_id", 200),
        "created": now(), "currency": currency, "customer": None, "customer_details": None,
        "expires_at": _expires_at(params), "livemode": False,
        "metadata": metadata_param(params.get("metadata")), "mode": "payment",
        "payment_intent": None, "payment_method_types": ["card"], "payment_status": "unpaid",
        "status": "open", "success_url": success_url,
        "url": f"{public_url.rstrip('/')}/c/pay/{cs_id}",
        # the stand-in's own: what the PaymentIntent is created with when the session is paid
        "_payment_intent_data": {"metadata": metadata_param(pi_data.get("metadata")),
                                 "description": str_param(pi_data, "description", 1000)},
    }
    store.checkout_sessions[cs_id] = session
    return session


def wire(session: JSON) -> JSON:
    """The session as the API answers it (without the stand-in's own fields)."""
    return {k: copy.deepcopy(v) for k, v in session.items() if not k.startswith("_")}


def get(store: Store, cs_id: str) -> JSON:
    session = store.checkout_sessions.get(cs_id)
    if session is None:
        raise StandinError.missing("checkout.session", cs_id, param="session")
    return session


def _require(session: JSON, status: str, payment_status: str | None, action: str) -> None:
    if session["status"] != status or (
            payment_status is not None and session["payment_status"] != payment_status):
        raise StandinError.invalid(
            f"Cannot {action} Checkout Session {session['id']}: its status is "
            f"{session['status']} ({session['payment_status']}).",
            code="checkout_session_unexpected_state")


def expire(store: Store, cs_id: str) -> JSON:
    session = get(store, cs_id)
    _require(session, "open", None, "expire")
    session.update(status="expired", url=None)
    return session


def pay(store: Store, cs_id: str, paid: Paid) -> tuple[JSON, JSON]:
    """The payer paid: the session's PaymentIntent is created, succeeded (``paid``) or left
    ``processing`` (an async payment method: the session completes unpaid)."""
    session = get(store, cs_id)
    _require(session, "open", None, "complete")
    data = session["_payment_intent_data"]
    pi = payment_intents.create(store, {
        "amount": str(session["amount_total"]), "currency": session["currency"],
        "metadata": data["metadata"], "description": data["description"]})
    if paid == "paid":
        pi = payment_intents.succeed(store, pi["id"])
    else:
        pi.update(status="processing", payment_method=new_id("pm"))
    session.update(status="complete", payment_intent=pi["id"], url=None,
                   payment_status="paid" if paid == "paid" else "unpaid")
    return session, pi


def settle_async(store: Store, cs_id: str, succeeded: bool) -> tuple[JSON, JSON]:
    """An async payment of a completed session resolved."""
    session = get(store, cs_id)
    _require(session, "complete", "unpaid", "settle")
    pi = store.get_payment_intent(session["payment_intent"])
    pi["status"] = "requires_capture"  # leaves "processing" so the transitions allow it
    if succeeded:
        payment_intents.succeed(store, pi["id"])
        session["payment_status"] = "paid"
    else:
        payment_intents.fail(store, pi["id"])
    return session, pi


class Sessions:
    """The stand-in's session operations: API executors, control transitions (each sends its
    events) and the expiry sweep."""

    def __init__(self, svc: Standin) -> None:
        self.svc = svc
        self._sweeping = False

    def flow_of(self, cs_id: str) -> str | None:
        return (self.svc.store.checkout_sessions.get(cs_id) or {}).get("metadata", {}).get(
            "flow_id")

    def create(self, params: JSON, request_id: str, key: str | None) -> Outcome:
        session = create(self.svc.store, params, self.svc.config.public_url)
        return Outcome(200, wire(session), mutated=True)

    def retrieve(self, cs_id: str) -> Any:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            return Outcome(200, wire(get(self.svc.store, cs_id)), replayable=False)
        return execute

    def expire(self, cs_id: str) -> Any:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            session = expire(self.svc.store, cs_id)
            event = self.svc.record_event("checkout.session.expired", wire(session),
                                          request_id, key)
            return Outcome(200, wire(session), [event], mutated=True)
        return execute

    async def transition(self, cs_id: str, action: str) -> JSON:
        """``pay``, ``pay_async``, ``async_succeed``, ``async_fail`` or ``expire``."""
        store, record = self.svc.store, self.svc.record_event
        async with self.svc.lock:
            events: list[StoredEvent] = []
            if action in ("pay", "pay_async"):
                session, pi = pay(store, cs_id, "paid" if action == "pay" else "processing")
                if action == "pay":
                    events.append(record("payment_intent.succeeded", pi))
                events.append(record("checkout.session.completed", wire(session)))
            elif action in ("async_succeed", "async_fail"):
                ok = action == "async_succeed"
                session, pi = settle_async(store, cs_id, ok)
                events.append(record("payment_intent.succeeded" if ok
                                     else "payment_intent.payment_failed", pi))
                events.append(record("checkout.session.async_payment_" +
                                     ("succeeded" if ok else "failed"), wire(session)))
            else:
                session = expire(store, cs_id)
                events.append(record("checkout.session.expired", wire(session)))
            await store.save()
        for event in events:
            self.svc.dispatch(event)
        return {"checkout_session": wire(session), "events": [e.event for e in events]}

    def start_sweep(self) -> None:
        """Expire open sessions at their ``expires_at`` (a background task while any is open)."""
        if not self._sweeping:
            self._sweeping = True
            self.svc.webhooks._spawn(self._sweep())

    async def _sweep(self) -> None:
        try:
            while any(s["status"] == "open" for s in self.svc.store.checkout_sessions.values()):
                due = [cs_id for cs_id, s in self.svc.store.checkout_sessions.items()
                       if s["status"] == "open" and s["expires_at"] <= now()]
                for cs_id in due:
                    try:
                        await self.transition(cs_id, "expire")
                    except StandinError:  # paid or expired meanwhile
                        continue
                await asyncio.sleep(1.0)
        finally:
            self._sweeping = False


def checkout_session_routes(app: FastAPI, svc: Standin) -> Sessions:
    """``/v1/checkout/sessions…`` (register before the ``/v1`` catch-all) and the control
    routes ``/_standin/checkout_sessions…``."""
    sessions = Sessions(svc)

    @app.post("/v1/checkout/sessions")
    async def create_session(request: Request) -> Response:
        response = await api_call(svc, request, SESSION_CREATE, sessions.create)
        sessions.start_sweep()
        return response

    @app.get("/v1/checkout/sessions")
    async def list_sessions(request: Request) -> Response:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            listed = {k: wire(s) for k, s in svc.store.checkout_sessions.items()}
            return Outcome(200, list_objects(listed, params, "/v1/checkout/sessions",
                                             "checkout.session"), replayable=False)
        return await api_call(svc, request, SESSION_LIST, execute, lambda _: None)

    @app.get("/v1/checkout/sessions/{cs_id}")
    async def retrieve_session(request: Request, cs_id: str) -> Response:
        return await api_call(svc, request, SESSION_RETRIEVE, sessions.retrieve(cs_id),
                              lambda _: sessions.flow_of(cs_id))

    @app.post("/v1/checkout/sessions/{cs_id}/expire")
    async def expire_session(request: Request, cs_id: str) -> Response:
        return await api_call(svc, request, SESSION_EXPIRE, sessions.expire(cs_id),
                              lambda _: sessions.flow_of(cs_id))

    _control_routes(app, svc, sessions)
    return sessions


def _control_routes(app: FastAPI, svc: Standin, sessions: Sessions) -> None:
    async def answer(cs_id: str, action: str) -> Response:
        try:
            return json_response(await sessions.transition(cs_id, action))
        except StandinError as e:
            return error_response(e)

    @app.post("/_standin/checkout_sessions/{cs_id}/complete")
    async def complete(cs_id: str, payment: Literal["paid", "async"] = "paid") -> Response:
        """The payer paid (``?payment=async``: with an async method, still unpaid)."""
        return await answer(cs_id, "pay" if payment == "paid" else "pay_async")

    @app.post("/_standin/checkout_sessions/{cs_id}/async_succeed")
    async def async_succeed(cs_id: str) -> Response:
        return await answer(cs_id, "async_succeed")

    @app.post("/_standin/checkout_sessions/{cs_id}/async_fail")
    async def async_fail(cs_id: str) -> Response:
        return await answer(cs_id, "async_fail")

    @app.post("/_standin/checkout_sessions/{cs_id}/expire")
    async def expire_now(cs_id: str) -> Response:
        return await answer(cs_id, "expire")

    @app.get("/_standin/checkout_sessions")
    async def list_all(flow_id: str | None = None, status: str | None = None) -> Response:
        """Oldest first; ``?flow_id=`` (its ``metadata.flow_id``), ``?status=``."""
        data = [wire(s) for s in svc.store.checkout_sessions.values()
                if (flow_id is None or s["metadata"].get("flow_id") == flow_id)
                and (status is None or s["status"] == status)]
        return json_response({"data": data})
