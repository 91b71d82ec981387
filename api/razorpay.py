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

import logging
import re
import time
from typing import Annotated

import razorpay
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import (
    AppSettings,
    ClientPrincipal,
    DbSession,
    RawBody,
    Temporal,
    json_body,
    openapi_body,
)
from api.errors import ProblemError
from api.razorpay_events import MalformedEvent, created_at, parse_event, read_body
from api.webhooks import decide_event, refuse_malformed, signal_flow
from contracts.errors import ErrorCode as E
from contracts.gateway import PAYMENT_SUCCEEDED, PaymentEvent
from db.gateway_objects import GatewayObjectKind, GatewayObjectRepository
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
        return await refuse_malformed(session, body, str(e), SOURCE)
    return JSONResponse(await decide_event(session, temporal, event, SOURCE))


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
    outcome = await signal_flow(temporal, flow_id, "payment_event", event)
    return JSONResponse(VerifyView(flow_id=flow_id, verified=True, outcome=outcome).model_dump())
