"""Gateway webhooks in. The signature is checked on the raw bytes in a dependency, before any
parsing; the event is read strictly (``api/stripe_events.py``); it is routed to the flow that
created the object it names, by the stored object id (``db/gateway_objects.py``), the
object's ``metadata.flow_id`` being only a cross-check; each event is stored once with its
outcome; then the flow is signalled with the event id (the workflow deduplicates too).
Forged or stale deliveries get 400 and are not stored; signed but malformed ones get 400
``malformed_payload`` and are stored; events that name another flow or amount than the stored
object's are acknowledged as ``ignored_mismatch`` and never signalled; events for unknown or
finished flows are acknowledged and recorded. A Checkout Session (gateway ``stripe_checkout``)
is routed by the session's id; the events of its PaymentIntent are recorded as ``ignored``."""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated, Any

import stripe
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AppSettings, DbSession, RawBody, Temporal
from api.errors import ProblemError, problem
from api.payees import account_status, record_account_update
from api.stripe_events import MalformedEvent, StripeEvent, parse_event
from contracts.errors import ErrorCode as E
from contracts.money import CURRENCY_EXPONENTS
from db.gateway_objects import GatewayObjectRepository
from db.webhook_events import WebhookEventRepository

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
SOURCE = "stripe"


async def verified_stripe_body(request: Request, body: RawBody,
                               settings: AppSettings) -> bytes:
    """Verify Stripe-Signature with the official SDK against every configured secret (several
    during rotation), with the timestamp tolerance; only then is the body read."""
    header = request.headers.get("stripe-signature")
    if not header:
        raise ProblemError(E.SIGNATURE_MISSING, "the Stripe-Signature header is missing",
                           status=400)
    for secret in settings.webhook_secrets:
        try:
            stripe.WebhookSignature.verify_header(
                body.decode("utf-8"), header, secret, settings.stripe_webhook_tolerance_seconds)
            return body
        except stripe.SignatureVerificationError:
            continue
        except UnicodeDecodeError:
            raise ProblemError(E.MALFORMED_PAYLOAD, "the body is not UTF-8") from None
    raise ProblemError(E.SIGNATURE_INVALID,
                       "the signature does not match, or its timestamp is too old", status=400)


async def route_event(session: AsyncSession, event: StripeEvent
                      ) -> tuple[str | None, str | None]:
    """The flow to signal, or why none may be: the flow that created the object (as stored,
    under ``event.gateway``); the flow id the object carries (Stripe's ``metadata.flow_id``,
    Razorpay's ``notes.flow_id``) only cross-checks it, and routes an object not recorded yet
    (its event raced the recording)."""
    if event.kind is None:
        return None, None
    if event.currency is not None and event.currency not in CURRENCY_EXPONENTS:
        return None, f"currency {event.currency} is not one this service uses"
    stored = await GatewayObjectRepository(session).find(event.gateway, event.kind,
                                                         event.object_id)
    if stored is None:
        return event.flow_id, None
    if event.flow_id is not None and event.flow_id != stored.flow_id:
        return None, (f"the event's flow id names another flow than the one that created "
                      f"{event.object_id}")
    said = event.money()
    if said is not None and said != stored.amount:
        return None, f"{event.object_id} is for {stored.amount}, the event says {said}"
    return stored.flow_id, None


async def refuse_malformed(session: AsyncSession, body: bytes, why: str,
                           source: str = SOURCE) -> JSONResponse:
    """Record a signed but malformed delivery (under a digest of its body: its own id may be
    what is malformed, and must stay free for a well-formed delivery) and refuse it; answered,
    not raised, so the request's session commits the record."""
    key = "malformed:" + hashlib.sha256(body).hexdigest()[:32]
    events = WebhookEventRepository(session)
    if await events.record(source, key, "malformed", None,
                           {"body": body.decode("utf-8", "replace")}):
        await events.mark(source, key, "malformed", False, why)
    log.warning("malformed %s event refused: %s", source, why)
    return problem(E.MALFORMED_PAYLOAD, f"the event is malformed: {why}")


@router.post("/v1/webhooks/stripe", summary="Stripe webhook endpoint")
async def stripe_webhook(body: Annotated[bytes, Depends(verified_stripe_body)],
                         session: DbSession, temporal: Temporal) -> JSONResponse:
    try:
        event = parse_event(body)
        account = account_status(event)  # account.updated (Connect): the payee's status
    except MalformedEvent as e:
        return await refuse_malformed(session, body, str(e))
    if account is not None:
        return JSONResponse(await record_account_update(session, event, *account))
    return JSONResponse(await decide_event(session, temporal, event))


async def decide_event(session: AsyncSession, temporal: Client, event: StripeEvent,
                       source: str = SOURCE) -> dict[str, Any]:
    """Store the event once (by its id, per source), then signal the flow it is routed to, or
    say why not."""
    flow_id, mismatch = await route_event(session, event)
    events = WebhookEventRepository(session)
    # The insert's row lock is held until commit: concurrent duplicates wait here, then see
    # the event already decided.
    if not await events.record(source, event.id, event.type, flow_id or event.flow_id,
                               event.payload):
        return {"received": True, "duplicate": True}
    if mismatch is not None:
        log.warning("%s event %s ignored: %s", source, event.id, mismatch)
        await events.mark(source, event.id, "ignored_mismatch", False, mismatch)
        return {"received": True, "outcome": "ignored_mismatch", "detail": mismatch}
    if event.signal is None or not flow_id:
        await events.mark(source, event.id, "ignored", False, event.note)
        return {"received": True, "outcome": "ignored"}
    outcome = await signal_flow(temporal, flow_id, event.signal_name, event.signal)
    await events.mark(source, event.id, outcome, outcome == "signalled")
    return {"received": True, "outcome": outcome}


async def signal_flow(temporal: Client, flow_id: str, name: str, signal: Any) -> str:
    """Signal a flow: ``signalled``, or ``flow_closed_or_unknown`` (acknowledged and recorded);
    Temporal unreachable is a 503."""
    try:
        await temporal.get_workflow_handle(flow_id).signal(name, signal)
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise ProblemError(E.TEMPORAL_UNAVAILABLE, "try again later") from e
        return "flow_closed_or_unknown"
    return "signalled"
