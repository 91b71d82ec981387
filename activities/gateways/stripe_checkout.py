"""Stripe Checkout Sessions (gateway ``stripe_checkout``): the payer pays on Stripe's hosted page
(the session's ``url``) and comes back to a success or cancel URL. The flow's payment id is the
session id (``cs_...``); the session's own PaymentIntent is only an implementation detail of
Stripe's (its events are acknowledged and ignored; refunds resolve it). The SDK client, the
error mapping, refunds and payouts are `StripeGateway`'s."""

from __future__ import annotations

from typing import Any

import stripe

from activities.gateways import GatewayRefused
from activities.gateways.stripe_gateway import (
    CHECKOUT_SURFACE,
    SURFACE_KEY,
    StripeGateway,
    payment_status,
)
from contracts.gateway import (
    PAYMENT_CANCELED,
    PAYMENT_FAILED,
    PAYMENT_PENDING,
    PAYMENT_SUCCEEDED,
    CreatePaymentRequest,
    GatewayPayment,
    GatewayRefund,
    PaymentRef,
)
from contracts.money import Money
from contracts.reconcile import SeenObject

# Stripe takes a session's expires_at between 30 minutes and 24 hours after its creation.
MIN_SESSION_SECONDS, MAX_SESSION_SECONDS = 30 * 60, 24 * 3600
# Room for the request's own latency and its retries (same parameters, same idempotency key).
SESSION_SLACK_SECONDS = 300
DEFAULT_RETURN_URL = "http://localhost:8000/v1/flows/{flow_id}"


def session_expiry(req: CreatePaymentRequest) -> int | None:
    """The session's expires_at: the flow's expiry, within Stripe's bounds counted from the
    flow's start (stable across retries). A flow shorter than Stripe's minimum gets a longer
    session, which the flow expires itself at its own expiry (its cancel)."""
    if req.expires_at is None:
        return None
    start = req.expires_at - (req.expires_in_seconds or MIN_SESSION_SECONDS)
    low = start + MIN_SESSION_SECONDS + SESSION_SLACK_SECONDS
    high = start + MAX_SESSION_SECONDS - SESSION_SLACK_SECONDS
    return min(max(req.expires_at, low), high)


def session_status(session: dict[str, Any]) -> str:
    """A session as a PAYMENT_* status: paid (or nothing to pay) → succeeded, expired →
    canceled, open or completed but still unpaid (an async payment method) → pending."""
    if session["status"] == "expired":
        return PAYMENT_CANCELED
    if session["status"] == "complete" and session.get("payment_status") in (
            "paid", "no_payment_required"):
        return PAYMENT_SUCCEEDED
    return PAYMENT_PENDING


class StripeCheckoutGateway(StripeGateway):
    name = "stripe_checkout"

    def __init__(self, api_key: str, api_base: str | None = None, timeout: float = 10.0,
                 success_url: str | None = None, cancel_url: str | None = None):
        """``success_url`` / ``cancel_url``: the defaults when a request names none (no cancel
        URL anywhere: the success URL); ``{flow_id}`` in them is replaced by the flow's id."""
        super().__init__(api_key, api_base, None, timeout)
        self.success_url = success_url or DEFAULT_RETURN_URL
        self.cancel_url = cancel_url

    def _to_session(self, obj: Any, pi: dict[str, Any] | None = None) -> GatewayPayment:
        s = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        status, reason = session_status(s), None
        if pi is not None and payment_status(pi) == PAYMENT_FAILED:
            error = pi.get("last_payment_error") or {}
            status, reason = PAYMENT_FAILED, error.get("code") or "async_payment_failed"
        return GatewayPayment(
            gateway=self.name, payment_id=s["id"], status=status,
            amount=Money(int(s["amount_total"]), str(s["currency"]).upper()),
            checkout_url=s.get("url"), failure_reason=reason)

    def _session_params(self, req: CreatePaymentRequest) -> Any:
        metadata = {"flow_id": req.flow_id, "tenant_id": req.tenant_id}
        success = req.success_url or self.success_url
        urls = [u.replace("{flow_id}", req.flow_id)
                for u in (success, req.cancel_url or self.cancel_url or success)]
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": req.amount.currency.lower(), "unit_amount": req.amount.amount,
                "product_data": {"name": req.description}}}],
            "success_url": urls[0], "cancel_url": urls[1],
            "client_reference_id": req.flow_id, "metadata": metadata,
            "payment_intent_data": {"metadata": {**metadata, SURFACE_KEY: CHECKOUT_SURFACE}},
        }
        if (expires_at := session_expiry(req)) is not None:
            params["expires_at"] = expires_at
        return params

    async def create_payment(self, req: CreatePaymentRequest) -> GatewayPayment:
        session = await self._call(self.client.v1.checkout.sessions.create_async(
            self._session_params(req), options={"idempotency_key": req.idempotency_key}))
        return self._to_session(session)

    async def retrieve_payment(self, ref: PaymentRef) -> GatewayPayment:
        """The session; completed but unpaid, its PaymentIntent says whether the (async)
        payment failed."""
        session = (await self._call(self.client.v1.checkout.sessions.retrieve_async(
            ref.payment_id))).to_dict()
        pi = None
        if session["status"] == "complete" and session_status(session) == PAYMENT_PENDING and (
                pi_id := session.get("payment_intent")):
            pi_id = pi_id["id"] if isinstance(pi_id, dict) else pi_id
            pi = (await self._call(self.client.v1.payment_intents.retrieve_async(
                pi_id))).to_dict()
        return self._to_session(session, pi)

    async def cancel_payment(self, ref: PaymentRef) -> GatewayPayment:
        """Expire the session so it can no longer be paid; one that already completed (or
        expired) is reported as it is."""
        try:
            session = await self._call(self.client.v1.checkout.sessions.expire_async(
                ref.payment_id))
        except GatewayRefused as e:
            if isinstance(e.__cause__, stripe.InvalidRequestError):
                return await self.retrieve_payment(ref)
            raise
        return self._to_session(session)

    def _to_refund(self, obj: Any) -> GatewayRefund:
        # A refund is a plain Stripe refund whichever surface took the payment: recorded and
        # routed (webhooks, reconciliation) as the "stripe" gateway's.
        refund = super()._to_refund(obj)
        refund.gateway = StripeGateway.name
        return refund

    def payout_providers(self) -> list[Any]:
        return []  # payouts are the "stripe" gateway's (the same account)

    async def list_objects(self, kind: str, since: int) -> list[SeenObject]:
        """Sessions (as payments) created since ``since``; refunds and payouts are the
        ``stripe`` gateway's to list (the same account)."""
        if kind != "payment":
            return []
        params: Any = {"created": {"gte": since}, "limit": 100}
        seen: list[SeenObject] = []
        while True:
            page = await self._call(self.client.v1.checkout.sessions.list_async(params))
            for obj in page.data:
                raw = obj.to_dict()
                known = self._to_session(raw)
                metadata = raw.get("metadata") or {}
                seen.append(SeenObject(kind, self.name, raw["id"], known.status, known.amount,
                                       metadata.get("flow_id"), metadata.get("tenant_id"),
                                       int(raw["created"])))
            if not page.has_more or not page.data:
                return seen
            params["starting_after"] = page.data[-1]["id"]
