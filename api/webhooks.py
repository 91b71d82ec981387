"""Gateway webhooks in. The signature is checked on the raw bytes in a dependency, before any
parsing; each event is stored once; then the flow named in the metadata is signalled with the
event id (the workflow deduplicates too). Forged, stale or malformed deliveries get 4xx and
never reach a workflow; events for unknown or finished flows are acknowledged and recorded."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import stripe
from fastapi import APIRouter, Depends, Request
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AppSettings, DbSession, RawBody, Temporal
from api.errors import ProblemError
from contracts.errors import ErrorCode as E
from contracts.gateway import (
    PAYMENT_CANCELED,
    PAYMENT_FAILED,
    PAYMENT_PENDING,
    PAYMENT_SUCCEEDED,
    PaymentEvent,
    PayoutEvent,
    RefundEvent,
)
from contracts.money import Money
from db.webhook_events import WebhookEventRepository

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

STRIPE_REFUND_STATUS = {"succeeded": PAYMENT_SUCCEEDED, "failed": PAYMENT_FAILED,
                        "canceled": PAYMENT_FAILED, "pending": PAYMENT_PENDING}
STRIPE_PAYMENT_EVENTS = {
    "payment_intent.succeeded": PAYMENT_SUCCEEDED,
    "payment_intent.payment_failed": PAYMENT_FAILED,
    "payment_intent.canceled": PAYMENT_CANCELED,
}


async def verified_stripe_event(request: Request, body: RawBody,
                                settings: AppSettings) -> dict[str, Any]:
    """Verify Stripe-Signature with the official SDK against every configured secret (several
    during rotation), with the timestamp tolerance; only then parse."""
    header = request.headers.get("stripe-signature")
    if not header:
        raise ProblemError(E.SIGNATURE_MISSING, "the Stripe-Signature header is missing",
                           status=400)
    for secret in settings.webhook_secrets:
        try:
            stripe.WebhookSignature.verify_header(
                body.decode("utf-8"), header, secret, settings.stripe_webhook_tolerance_seconds)
            break
        except stripe.SignatureVerificationError:
            continue
        except UnicodeDecodeError:
            raise ProblemError(E.MALFORMED_PAYLOAD, "the body is not UTF-8") from None
    else:
        raise ProblemError(E.SIGNATURE_INVALID,
                           "the signature does not match, or its timestamp is too old", status=400)
    try:
        event = json.loads(body)
        if not isinstance(event, dict):
            raise ValueError("not an object")
        event["id"], event["type"], event["data"]["object"]  # noqa: B018 - shape check
    except (ValueError, KeyError, TypeError):
        raise ProblemError(E.MALFORMED_PAYLOAD, "the event is not a Stripe event") from None
    return event


def _signal_for(event: dict[str, Any]
                ) -> tuple[str, PaymentEvent | RefundEvent | PayoutEvent | None]:
    """The workflow signal a Stripe event becomes: payment events for top-ups and orders,
    refund events for refunds; anything else is only recorded."""
    obj = event["data"]["object"]
    if event["type"] in STRIPE_PAYMENT_EVENTS:
        return "payment_event", PaymentEvent(
            event_id=event["id"], payment_id=obj["id"],
            status=STRIPE_PAYMENT_EVENTS[event["type"]],
            amount=(Money(int(obj["amount"]), str(obj["currency"]).upper())
                    if "amount" in obj else None),
            failure_reason=(obj.get("last_payment_error") or {}).get("code"))
    if event["type"] in ("refund.updated", "refund.failed") and obj.get("object") == "refund":
        status = STRIPE_REFUND_STATUS.get(obj.get("status", ""), PAYMENT_PENDING)
        return "refund_event", RefundEvent(event["id"], obj["id"], status,
                                           obj.get("failure_reason"))
    if event["type"] in ("payout.paid", "payout.failed") and obj.get("object") == "payout":
        status = PAYMENT_SUCCEEDED if event["type"] == "payout.paid" else PAYMENT_FAILED
        return "payout_event", PayoutEvent(event["id"], obj["id"], status,
                                           obj.get("failure_code"))
    return "", None


@router.post("/v1/webhooks/stripe", summary="Stripe webhook endpoint")
async def stripe_webhook(event: Annotated[dict[str, Any], Depends(verified_stripe_event)],
                         session: DbSession, temporal: Temporal) -> dict[str, Any]:
    obj = event["data"]["object"]
    metadata = obj.get("metadata") or {}
    flow_id = metadata.get("flow_id")
    events = WebhookEventRepository(session)
    # The insert's row lock is held until commit: concurrent duplicates wait here, then see
    # the event already signalled.
    if not await events.record("stripe", event["id"], event["type"], flow_id, event):
        return {"received": True, "duplicate": True}

    name, signal = _signal_for(event)
    if signal is None or not flow_id:
        await events.mark("stripe", event["id"], "ignored", signalled=False)
        return {"received": True, "outcome": "ignored"}

    handle = temporal.get_workflow_handle(flow_id)
    try:
        await handle.signal(name, signal)
        outcome, signalled = "signalled", True
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise ProblemError(E.TEMPORAL_UNAVAILABLE, "try again later") from e
        # Unknown flow, or one that already finished: acknowledged and recorded.
        outcome, signalled = "flow_closed_or_unknown", False
    await events.mark("stripe", event["id"], outcome, signalled)
    return {"received": True, "outcome": outcome}
