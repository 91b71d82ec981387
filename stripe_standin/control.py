"""The JSON control API under ``/_standin/`` for the dev stack and tests: move payments, refunds
and payouts to their final states and list them; inspect and reset stats and the call log; arm,
list and clear faults; list events, sign or re-deliver one, list deliveries; read and change the
webhook config. Docs at ``/_standin/docs``."""

from __future__ import annotations

import copy
from collections.abc import Awaitable
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from stripe_standin.calls import new_counters
from stripe_standin.faults import FaultSpec
from stripe_standin.service import Standin
from stripe_standin.store import StoredEvent
from stripe_standin.stripe_api import error_response, json_response
from stripe_standin.webhooks import sign_payload
from stripe_standin.wire import JSON, StandinError


class ConfigUpdate(BaseModel):
    webhook_url: str | None = None
    webhook_secrets: list[str] | None = None


def control_routes(app: FastAPI, svc: Standin) -> None:
    """Register every ``/_standin/`` route."""
    _payment_routes(app, svc)
    _refund_routes(app, svc)
    _payout_routes(app, svc)
    _inspection_routes(app, svc)
    _event_routes(app, svc)
    _config_routes(app, svc)


async def _answer(result: Awaitable[JSON]) -> Response:
    """The transition's result, or its error in Stripe's shape."""
    try:
        return json_response(await result)
    except StandinError as e:
        return error_response(e)


def _payment_routes(app: FastAPI, svc: Standin) -> None:
    @app.post("/_standin/payment_intents/{pi_id}/succeed")
    async def succeed(pi_id: str) -> Response:
        return await _answer(svc.transition(pi_id, "succeed"))

    @app.post("/_standin/payment_intents/{pi_id}/fail")
    async def fail(pi_id: str) -> Response:
        return await _answer(svc.transition(pi_id, "fail"))

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
        return json_response({"data": data})


def _refund_routes(app: FastAPI, svc: Standin) -> None:
    @app.post("/_standin/refunds/{re_id}/succeed")
    async def succeed_refund(re_id: str) -> Response:
        return await _answer(svc.resolve_refund(re_id, "succeeded"))

    @app.post("/_standin/refunds/{re_id}/fail")
    async def fail_refund(re_id: str) -> Response:
        return await _answer(svc.resolve_refund(re_id, "failed"))

    @app.get("/_standin/refunds")
    async def list_refunds(payment_intent: str | None = None, flow_id: str | None = None,
                           status: str | None = None) -> Response:
        """Filter with ``?payment_intent=``, ``?flow_id=`` (the refund's, else its payment
        intent's) and ``?status=``; oldest first."""
        data = [copy.deepcopy(r) for r in svc.store.refunds.values()
                if (payment_intent is None or r["payment_intent"] == payment_intent)
                and (flow_id is None or svc.store.refund_flow_id(r) == flow_id)
                and (status is None or r["status"] == status)]
        return json_response({"data": data})


def _payout_routes(app: FastAPI, svc: Standin) -> None:
    @app.post("/_standin/payouts/{po_id}/paid")
    async def pay_payout(po_id: str) -> Response:
        return await _answer(svc.resolve_payout(po_id, "paid"))

    @app.post("/_standin/payouts/{po_id}/fail")
    async def fail_payout(po_id: str) -> Response:
        return await _answer(svc.resolve_payout(po_id, "failed"))

    @app.get("/_standin/payouts")
    async def list_payouts(flow_id: str | None = None, status: str | None = None,
                           destination: str | None = None) -> Response:
        """Filter with ``?flow_id=`` (the payout's ``metadata.flow_id``), ``?status=`` and
        ``?destination=``; oldest first."""
        data = [copy.deepcopy(po) for po in svc.store.payouts.values()
                if (flow_id is None or po["metadata"].get("flow_id") == flow_id)
                and (status is None or po["status"] == status)
                and (destination is None or po["destination"] == destination)]
        return json_response({"data": data})


def _inspection_routes(app: FastAPI, svc: Standin) -> None:
    @app.get("/_standin/calls")
    async def list_calls(operation: str | None = None, flow_id: str | None = None,
                         idempotency_key: str | None = None) -> Response:
        """The API call log (authenticated calls, oldest first): one entry per call with its
        operation, idempotency_key, flow_id, status_code (null while in flight), replayed,
        fault (the injected mode or null), request_id and at (unix time)."""
        data = [dict(c) for c in svc.calls.calls
                if (operation is None or c["operation"] == operation)
                and (flow_id is None or c["flow_id"] == flow_id)
                and (idempotency_key is None or c["idempotency_key"] == idempotency_key)]
        return json_response({"data": data})

    @app.delete("/_standin/calls")
    async def clear_calls() -> Response:
        svc.calls.calls.clear()
        return json_response({"data": []})

    @app.get("/_standin/stats")
    async def stats(flow_id: str | None = None) -> Response:
        if flow_id is not None:
            return json_response(svc.calls.flow_stats.get(flow_id, new_counters()))
        return json_response(svc.calls.stats)

    @app.delete("/_standin/stats")
    async def reset_stats() -> Response:
        svc.calls.reset_stats()
        return json_response(svc.calls.stats)

    @app.post("/_standin/faults")
    async def add_fault(spec: FaultSpec) -> Response:
        return json_response(svc.faults.add(spec).to_json(), 201)

    @app.get("/_standin/faults")
    async def list_faults() -> Response:
        return json_response({"data": svc.faults.snapshot()})

    @app.delete("/_standin/faults")
    async def clear_faults() -> Response:
        svc.faults.clear()
        return json_response({"data": []})


def _stored_event(svc: Standin, evt_id: str) -> StoredEvent:
    event = svc.store.events.get(evt_id)
    if event is None:
        raise StandinError.missing("event", evt_id, param="id")
    return event


def _event_routes(app: FastAPI, svc: Standin) -> None:
    @app.get("/_standin/events")
    async def list_events(payment_intent: str | None = None, flow_id: str | None = None,
                          type_: Annotated[str | None, Query(alias="type")] = None) -> Response:
        data = [e.event for e in svc.store.events.values()
                if (payment_intent is None or e.payment_intent_id == payment_intent)
                and (flow_id is None or e.flow_id == flow_id)
                and (type_ is None or e.event["type"] == type_)]
        return json_response({"data": data})

    @app.get("/_standin/events/{evt_id}/signed")
    async def signed_event(evt_id: str, timestamp: int | None = None,
                           secret: Annotated[list[str] | None, Query()] = None) -> Response:
        """The exact payload and headers of a delivery, signed now (or at ``timestamp``) with
        the configured secrets (or the ``secret`` query values) — for replays and forgeries."""
        try:
            event = _stored_event(svc, evt_id)
        except StandinError as e:
            return error_response(e)
        secrets = secret or svc.config.webhook_secrets
        if not secrets:
            return json_response({"detail": "no webhook secret configured; pass ?secret="}, 409)
        return json_response({"payload": event.payload,
                              "headers": {"Stripe-Signature": sign_payload(event.payload, secrets,
                                                                           timestamp),
                                          "Content-Type": "application/json"}})

    @app.post("/_standin/events/{evt_id}/deliver")
    async def redeliver(evt_id: str) -> Response:
        """Send the event once, now, with a fresh signature (no faults, no retries); answers
        with the recorded attempt."""
        try:
            event = _stored_event(svc, evt_id)
        except StandinError as e:
            return error_response(e)
        result = await svc.webhooks.attempt_delivery(event)
        if result is None:
            return json_response({"detail": "no webhook_url/webhook_secrets configured"}, 409)
        return json_response({"delivery": result})

    @app.get("/_standin/deliveries")
    async def deliveries(event_id: str | None = None) -> Response:
        return json_response({"data": [d for d in svc.webhooks.deliveries
                                       if event_id is None or d["event_id"] == event_id]})


def _config_routes(app: FastAPI, svc: Standin) -> None:
    @app.get("/_standin/config")
    async def get_config() -> Response:
        return json_response({"webhook_url": svc.config.webhook_url,
                              "webhook_secrets": svc.config.webhook_secrets})

    @app.put("/_standin/config")
    async def put_config(update: ConfigUpdate) -> Response:
        if "webhook_url" in update.model_fields_set:
            svc.config.webhook_url = update.webhook_url
        if "webhook_secrets" in update.model_fields_set:
            svc.config.webhook_secrets = list(update.webhook_secrets or [])
        return await get_config()
