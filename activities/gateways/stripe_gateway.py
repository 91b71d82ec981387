"""Stripe through the official SDK. Offline, STRIPE_API_BASE points it at the project's
stand-in (`stripe_standin`), so the SDK's real HTTP path is what runs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import stripe

from activities.gateways import GatewayRefused, GatewayUnavailable
from activities.gateways.stripe_connect import StripeConnectPayouts, to_payout
from contracts.gateway import (
    PAYMENT_CANCELED,
    PAYMENT_FAILED,
    PAYMENT_PENDING,
    PAYMENT_SUCCEEDED,
    CreatePaymentRequest,
    CreateRefundRequest,
    GatewayPayment,
    GatewayPayout,
    GatewayRefund,
    PaymentRef,
    RefundRef,
)
from contracts.money import Money
from contracts.reconcile import SeenObject

_STATUS = {
    "succeeded": PAYMENT_SUCCEEDED,
    "canceled": PAYMENT_CANCELED,
    "requires_payment_method": PAYMENT_PENDING,
    "requires_confirmation": PAYMENT_PENDING,
    "requires_action": PAYMENT_PENDING,
    "processing": PAYMENT_PENDING,
    "requires_capture": PAYMENT_PENDING,
}
# The metadata a Checkout Session gives its PaymentIntent: the session decides, not the intent.
SURFACE_KEY, CHECKOUT_SURFACE = "walletflow_surface", "stripe_checkout"


def payment_status(pi: Any) -> str:
    status = _STATUS.get(pi["status"], PAYMENT_PENDING)
    if status == PAYMENT_PENDING and pi.get("last_payment_error"):
        return PAYMENT_FAILED
    return status


class StripeGateway:
    name = "stripe"

    def __init__(self, api_key: str, api_base: str | None = None,
                 checkout_base: str | None = None, timeout: float = 10.0,
                 minimal_params: bool = False):
        """``minimal_params``: send only what each call needs (no ``description``, no
        ``automatic_payment_methods``), for Stripe emulators that refuse them."""
        self.minimal_params = minimal_params
        self._http = stripe.HTTPXClient(timeout=timeout)
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=0,  # Temporal owns retries (same idempotency key each time)
        )
        self.checkout_base = checkout_base.rstrip("/") if checkout_base else None

    def _to_payment(self, obj: Any) -> GatewayPayment:
        pi = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        error = pi.get("last_payment_error")
        return GatewayPayment(
            gateway=self.name,
            payment_id=pi["id"],
            status=payment_status(pi),
            amount=Money(int(pi["amount"]), str(pi["currency"]).upper()),
            client_secret=pi.get("client_secret"),
            checkout_url=(f"{self.checkout_base}/checkout/{pi['id']}"
                          if self.checkout_base else None),
            failure_reason=(error.get("code") or error.get("message")) if error else None,
        )

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (stripe.APIConnectionError, stripe.RateLimitError) as e:
            raise GatewayUnavailable(f"stripe unreachable: {e.user_message or e}") from e
        except stripe.APIError as e:
            raise GatewayUnavailable(f"stripe error {e.http_status}: {e.user_message}") from e
        except (stripe.InvalidRequestError, stripe.CardError, stripe.IdempotencyError,
                stripe.AuthenticationError, stripe.PermissionError) as e:
            raise GatewayRefused(f"stripe refused ({e.code or e.http_status}): "
                                 f"{e.user_message}") from e
        except stripe.StripeError as e:
            if e.http_status and 400 <= e.http_status < 500 and e.http_status not in (409, 429):
                raise GatewayRefused(f"stripe refused ({e.http_status}): {e.user_message}") from e
            raise GatewayUnavailable(f"stripe error: {e}") from e

    async def create_payment(self, req: CreatePaymentRequest) -> GatewayPayment:
        params: Any = {  # the SDK's typed params, built up
            "amount": req.amount.amount,
            "currency": req.amount.currency.lower(),
            "metadata": {"flow_id": req.flow_id, "tenant_id": req.tenant_id},
        }
        if not self.minimal_params:
            params["description"] = req.description
            params["automatic_payment_methods"] = {"enabled": True}
        pi = await self._call(self.client.v1.payment_intents.create_async(
            params, options={"idempotency_key": req.idempotency_key}))
        return self._to_payment(pi)

    async def retrieve_payment(self, ref: PaymentRef) -> GatewayPayment:
        return self._to_payment(
            await self._call(self.client.v1.payment_intents.retrieve_async(ref.payment_id))
        )

    async def cancel_payment(self, ref: PaymentRef) -> GatewayPayment:
        """Cancel; when the payment already succeeded (or was cancelled) report its state."""
        try:
            pi = await self._call(self.client.v1.payment_intents.cancel_async(ref.payment_id))
        except GatewayRefused as e:
            cause = e.__cause__
            if isinstance(cause, stripe.InvalidRequestError) and (
                cause.code == "payment_intent_unexpected_state"
            ):
                return await self.retrieve_payment(ref)
            raise
        return self._to_payment(pi)

    async def create_refund(self, req: CreateRefundRequest) -> GatewayRefund:
        refund = await self._call(self.client.v1.refunds.create_async(
            {"payment_intent": await self._payment_intent_of(req.payment_id),
             "amount": req.amount.amount,
             "metadata": {"flow_id": req.flow_id, "tenant_id": req.tenant_id}},
            options={"idempotency_key": req.idempotency_key}))
        return self._to_refund(refund)

    async def _payment_intent_of(self, payment_id: str) -> str:
        """The PaymentIntent to refund: the payment itself, or a Checkout Session's (``cs_``)."""
        if not payment_id.startswith("cs_"):
            return payment_id
        session = (await self._call(self.client.v1.checkout.sessions.retrieve_async(
            payment_id))).to_dict()
        if not session.get("payment_intent"):
            raise GatewayRefused(f"checkout session {payment_id} has no payment to refund")
        pi = session["payment_intent"]
        return str(pi["id"] if isinstance(pi, dict) else pi)

    async def retrieve_refund(self, ref: RefundRef) -> GatewayRefund:
        return self._to_refund(await self._call(self.client.v1.refunds.retrieve_async(
            ref.refund_id)))

    def _to_refund(self, obj: Any) -> GatewayRefund:
        r = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        status = {"succeeded": PAYMENT_SUCCEEDED, "failed": PAYMENT_FAILED,
                  "canceled": PAYMENT_FAILED}.get(r["status"], PAYMENT_PENDING)
        return GatewayRefund(self.name, r["id"], status,
                             Money(int(r["amount"]), str(r["currency"]).upper()),
                             r.get("failure_reason"))

    @functools.cached_property
    def connect(self) -> StripeConnectPayouts:
        """Payouts reach a payee through Stripe Connect, on this client (``stripe_connect.py``;
        a platform Payout could only pay the platform's own bank account)."""
        return StripeConnectPayouts(self.client, self._call)

    def payout_providers(self) -> list[StripeConnectPayouts]:
        return [self.connect]

    def _to_payout(self, obj: Any) -> GatewayPayout:
        return to_payout(self.name, obj)

    async def list_objects(self, kind: str, since: int) -> list[SeenObject]:
        """The SDK's list calls (``created[gte]``), page by page (100 a page); payouts: each
        connected account's (Connect)."""
        if kind == "payout":
            return await self.connect.list_payouts(since)
        resource: Any = {"payment": self.client.v1.payment_intents,
                         "refund": self.client.v1.refunds,
                         "payout": self.client.v1.payouts}[kind]
        converters: dict[str, Callable[[Any], GatewayPayment | GatewayRefund | GatewayPayout]] = {
            "payment": self._to_payment, "refund": self._to_refund, "payout": self._to_payout}
        convert = converters[kind]
        params: dict[str, Any] = {"created": {"gte": since}, "limit": 100}
        seen: list[SeenObject] = []
        while True:
            page = await self._call(resource.list_async(params))
            for obj in page.data:
                raw = obj.to_dict()
                if (raw.get("metadata") or {}).get(SURFACE_KEY) == CHECKOUT_SURFACE:
                    continue  # a Checkout Session's intent: listed as its session
                known = convert(obj)
                metadata = raw.get("metadata") or {}
                seen.append(SeenObject(kind, self.name, raw["id"], known.status, known.amount,
                                       metadata.get("flow_id"), metadata.get("tenant_id"),
                                       int(raw["created"])))
            if not page.has_more or not page.data:
                return seen
            params["starting_after"] = page.data[-1]["id"]

    async def close(self) -> None:
        await self._http.close_async()

