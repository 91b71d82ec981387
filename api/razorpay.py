"""Razorpay in: webhooks at ``/v1/webhooks/razorpay`` and the checkout handler's answer at
``/v1/topups/{flow_id}/verify``.

Webhooks: ``X-Razorpay-Signature`` is checked with the official SDK on the raw bytes before any
parsing; Razorpay signs no timestamp, so an event whose ``created_at`` is older than
RAZORPAY_WEBHOOK_TOLERANCE_SECONDS is refused as stale (400, not stored); the event is read
strictly (``api/razorpay_events.py``), stored once by its ``X-Razorpay-Event-Id`` and routed to
the flow that created the order or refund it names (``db/gateway_objects.py``), as for Stripe
(``api/webhooks.py``).

Verify: the checkout handler's ``razorpay_signature`` (HMAC of ``order_id|payment_id`` under the
key secret) is checked with the SDK; the order must be the flow's, and the flow the caller's.
A valid one is the gateway's word that the order is paid: the flow is signalled as a webhook
would (the flow deduplicates; the webhook that follows changes nothing)."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from typing import Annotated, Any

import razorpay
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.deps import (
    AppSettings,
    ClientPrincipal,
    DbSession,
    RawBody,
    Temporal,
    json_body,
    openapi_body,
)
from api.errors import ProblemError, problem
from api.razorpay_events import MalformedEvent, RazorpayEvent, created_at, parse_event, read_body
from contracts.errors import ErrorCode as E
from contracts.gateway import PAYMENT_SUCCEEDED, PaymentEvent
from contracts.money import CURRENCY_EXPONENTS
from db.gateway_objects import GatewayObjectKind, GatewayObjectRepository
from db.webhook_events import WebhookEventRepository
from settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
SOURCE = "razorpay"
_RZP_ID = r"^[A-Za-z0-9_]{1,64}$"


def _client(settings: Settings) -> razorpay.Client:
    """Only for the SDK's signature utilities (no request is sent)."""
    return razorpay.Client(auth=(settings.razorpay_key_id or "",
                                 settings.razorpay_key_secret.get_secret_value()))


async def verified_razorpay_body(request: Request, body: RawBody,
                                 settings: AppSettings) -> bytes:
    header = request.headers.get("x-razorpay-signature")
    if not header:
        raise ProblemError(E.SIGNATURE_MISSING, "the X-Razorpay-Signature header is missing",
                           status=400)
    secret = settings.razorpay_webhook_secret.get_secret_value()
    if not settings.razorpay_key_id or not secret:
        raise ProblemError(E.SIGNATURE_INVALID, "Razorpay is not configured here", status=400)
    try:
        _client(settings).utility.verify_webhook_signature(body.decode("utf-8"), header, secret)
    except razorpay.errors.SignatureVerificationError:
        raise ProblemError(E.SIGNATURE_INVALID, "the signature does not match",
                           status=400) from None
    except UnicodeDecodeError:
        raise ProblemError(E.MALFORMED_PAYLOAD, "the body is not UTF-8") from None
    return body


@router.post("/v1/webhooks/razorpay", summary="Razorpay webhook endpoint")
async def razorpay_webhook(request: Request,
                           body: Annotated[bytes, Depends(verified_razorpay_body)],
                           session: DbSession, temporal: Temporal,
                           settings: AppSettings) -> JSONResponse:
    try:
        raw = read_body(body)
        age = time.time() - created_at(raw)
        if age > settings.razorpay_webhook_tolerance_seconds:
            raise ProblemError(E.SIGNATURE_INVALID, "the event is too old (stale: created "
                               f"{int(age)} s ago)", status=400)
        event = parse_event(request.headers.get("x-razorpay-event-id"), raw)
    except MalformedEvent as e:
        return await _refuse_malformed(session, body, str(e))
    return JSONResponse(await _decide(session, temporal, event))


async def _refuse_malformed(session: AsyncSession, body: bytes, why: str) -> JSONResponse:
    """Record a signed but malformed delivery under a digest of its body, and refuse it."""
    key = "malformed:" + hashlib.sha256(body).hexdigest()[:32]
    events = WebhookEventRepository(session)
    if await events.record(SOURCE, key, "malformed", None,
                           {"body": body.decode("utf-8", "replace")}):
        await events.mark(SOURCE, key, "malformed", False, why)
    log.warning("malformed Razorpay event refused: %s", why)
    return problem(E.MALFORMED_PAYLOAD, f"the event is malformed: {why}")


async def _route(session: AsyncSession, event: RazorpayEvent) -> tuple[str | None, str | None]:
    """The flow that created the object (as stored); ``notes.flow_id`` only cross-checks."""
    if event.kind is None:
        return None, None
    if event.currency is not None and event.currency not in CURRENCY_EXPONENTS:
        return None, f"currency {event.currency} is not one this service uses"
    stored = await GatewayObjectRepository(session).find(SOURCE, event.kind, event.object_id)
    if stored is None:
        return event.flow_id, None
    if event.flow_id is not None and event.flow_id != stored.flow_id:
        return None, f"notes.flow_id names another flow than the one that created " \
                     f"{event.object_id}"
    said = event.money()
    if said is not None and said != stored.amount:
        return None, f"{event.object_id} is for {stored.amount}, the event says {said}"
    return stored.flow_id, None


async def _decide(session: AsyncSession, temporal: Client,
                  event: RazorpayEvent) -> dict[str, Any]:
    """Store the event once (by its event id), then signal its flow or say why not."""
    flow_id, mismatch = await _route(session, event)
    events = WebhookEventRepository(session)
    if not await events.record(SOURCE, event.id, event.type, flow_id or event.flow_id,
                               event.payload):
        return {"received": True, "duplicate": True}
    if mismatch is not None:
        log.warning("Razorpay event %s ignored: %s", event.id, mismatch)
        await events.mark(SOURCE, event.id, "ignored_mismatch", False, mismatch)
        return {"received": True, "outcome": "ignored_mismatch", "detail": mismatch}
    if event.signal is None or not flow_id:
        await events.mark(SOURCE, event.id, "ignored", False)
        return {"received": True, "outcome": "ignored"}
    outcome = await _signal(temporal, flow_id, event.signal_name, event.signal)
    await events.mark(SOURCE, event.id, outcome, outcome == "signalled")
    return {"received": True, "outcome": outcome}


async def _signal(temporal: Client, flow_id: str, name: str, signal: Any) -> str:
    try:
        await temporal.get_workflow_handle(flow_id).signal(name, signal)
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise ProblemError(E.TEMPORAL_UNAVAILABLE, "try again later") from e
        return "flow_closed_or_unknown"
    return "signalled"


# -- the checkout handler's answer ------------------------------------------------------------


class RazorpayVerify(BaseModel):
    """What Razorpay's checkout hands the page's ``handler`` after a payment."""

    model_config = ConfigDict(extra="forbid")
    razorpay_payment_id: str = Field(pattern=_RZP_ID)
    razorpay_order_id: str = Field(pattern=_RZP_ID)
    razorpay_signature: str = Field(pattern=r"^[0-9a-f]{64}$")


class VerifyView(BaseModel):
    flow_id: str
    verified: bool
    outcome: str  # signalled / flow_closed_or_unknown


@router.post("/v1/topups/{flow_id}/verify", openapi_extra=openapi_body(RazorpayVerify),
             summary="Verify a Razorpay checkout payment (the checkout handler's signature)",
             tags=["top-ups"])
async def verify_topup(flow_id: str, principal: ClientPrincipal,
                       body: Annotated[RazorpayVerify, Depends(json_body(RazorpayVerify))],
                       session: DbSession, temporal: Temporal,
                       settings: AppSettings) -> JSONResponse:
    stored = await GatewayObjectRepository(session).find(
        SOURCE, GatewayObjectKind.PAYMENT, body.razorpay_order_id)
    if stored is None or stored.flow_id != flow_id or stored.tenant_id != principal.tenant_id:
        raise ProblemError(E.FLOW_NOT_FOUND, f"no Razorpay top-up {flow_id!r} with order "
                           f"{body.razorpay_order_id!r}")
    if not settings.razorpay_key_id or not re.match(_RZP_ID, body.razorpay_payment_id):
        raise ProblemError(E.SIGNATURE_INVALID, "Razorpay is not configured here", status=400)
    try:
        _client(settings).utility.verify_payment_signature(body.model_dump())
    except razorpay.errors.SignatureVerificationError:
        raise ProblemError(E.SIGNATURE_INVALID, "the checkout signature does not match",
                           status=400) from None
    event = PaymentEvent(f"checkout:{body.razorpay_payment_id}", body.razorpay_order_id,
                         PAYMENT_SUCCEEDED, stored.amount)
    outcome = await _signal(temporal, flow_id, "payment_event", event)
    return JSONResponse(VerifyView(flow_id=flow_id, verified=True, outcome=outcome).model_dump())
