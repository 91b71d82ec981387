"""Razorpay through the official SDK (``razorpay``, synchronous over ``requests``: each call runs
in a thread with its own timeout). Offline, RAZORPAY_API_BASE points it at the project's
stand-in (`razorpay_standin`).

The gateway payment is a Razorpay **order** (``order_…``): the flow's payment id is the order
id, paid when the order is ``paid``. Razorpay orders cannot be cancelled, so ``cancel_payment``
reports the order's state and the flow's expiry does the rest. A refund goes to the order's
captured payment (``pay_…``), found through the order's payments. Razorpay has no idempotency
keys for orders and refunds: the flow's key, hashed, is the object's ``receipt``, and a retry
first looks for the object with that receipt."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import razorpay
import requests

from activities.gateways import GatewayRefused, GatewayUnavailable
from contracts.gateway import (
    PAYMENT_FAILED,
    PAYMENT_PENDING,
    PAYMENT_SUCCEEDED,
    CreatePaymentRequest,
    CreateRefundRequest,
    GatewayPayment,
    GatewayPayout,
    GatewayRefund,
    PaymentRef,
    PayoutRef,
    PayoutRequest,
    RefundRef,
)
from contracts.money import Money
from contracts.reconcile import SeenObject

REFUND_STATUS = {"processed": PAYMENT_SUCCEEDED, "failed": PAYMENT_FAILED,
                 "pending": PAYMENT_PENDING}
PAGE = 100


def receipt_of(idempotency_key: str) -> str:
    """Razorpay's ``receipt`` (at most 40 characters) for one of our idempotency keys."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def order_status(order: dict[str, Any]) -> str:
    """paid → succeeded; created / attempted → pending (a failed attempt can be retried)."""
    return PAYMENT_SUCCEEDED if order["status"] == "paid" else PAYMENT_PENDING


class RazorpayGateway:
    name = "razorpay"

    def __init__(self, key_id: str, key_secret: str, api_base: str | None = None,
                 checkout_base: str | None = None, timeout: float = 10.0):
        options = {"base_url": api_base.rstrip("/")} if api_base else {}
        self.client = razorpay.Client(auth=(key_id, key_secret), **options)
        self.client.set_app_details({"title": "walletflow", "version": "1"})
        self.timeout = timeout
        self.checkout_base = checkout_base.rstrip("/") if checkout_base else None

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """One SDK call in a thread, with the per-call timeout (and a margin around it)."""
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(fn, *args, timeout=self.timeout), self.timeout + 2)
        except razorpay.errors.BadRequestError as e:
            raise GatewayRefused(f"razorpay refused: {e}") from e
        except (razorpay.errors.ServerError, razorpay.errors.GatewayError) as e:
            raise GatewayUnavailable(f"razorpay error: {e}") from e
        except (requests.RequestException, TimeoutError, ValueError) as e:
            raise GatewayUnavailable(f"razorpay unreachable: {type(e).__name__}: {e}") from e

    def _to_payment(self, order: dict[str, Any]) -> GatewayPayment:
        return GatewayPayment(
            gateway=self.name, payment_id=order["id"], status=order_status(order),
            amount=Money(int(order["amount"]), str(order["currency"]).upper()),
            client_secret=None,
            checkout_url=(f"{self.checkout_base}/checkout/{order['id']}"
                          if self.checkout_base else None))

    async def create_payment(self, req: CreatePaymentRequest) -> GatewayPayment:
        receipt = receipt_of(req.idempotency_key)
        found = await self._call(self.client.order.all, {"receipt": receipt, "count": 1})
        if found.get("items"):
            return self._to_payment(found["items"][0])  # a retry: the order exists
        order = await self._call(self.client.order.create, {
            "amount": req.amount.amount, "currency": req.amount.currency,
            "receipt": receipt, "payment_capture": 1,
            "notes": {"flow_id": req.flow_id, "tenant_id": req.tenant_id,
                      "description": req.description[:255]}})
        return self._to_payment(order)

    async def retrieve_payment(self, ref: PaymentRef) -> GatewayPayment:
        return self._to_payment(await self._call(self.client.order.fetch, ref.payment_id))

    async def cancel_payment(self, ref: PaymentRef) -> GatewayPayment:
        """Orders cannot be cancelled: the order's state (paid or not)."""
        return await self.retrieve_payment(ref)

    async def _captured_payment(self, order_id: str) -> str:
        payments = await self._call(self.client.order.payments, order_id)
        for payment in payments.get("items", []):
            if payment["status"] in ("captured", "refunded"):
                return str(payment["id"])
        raise GatewayRefused(f"razorpay order {order_id} has no captured payment to refund")

    async def create_refund(self, req: CreateRefundRequest) -> GatewayRefund:
        """A refund of the order's captured payment, to the original method."""
        payment_id = await self._captured_payment(req.payment_id)
        receipt = receipt_of(req.idempotency_key)
        existing = await self._call(self.client.payment.fetch_multiple_refund, payment_id)
        for refund in existing.get("items", []):
            if refund.get("receipt") == receipt:
                return self._to_refund(refund)  # a retry: the refund exists
        refund = await self._call(self.client.payment.refund, payment_id, {
            "amount": req.amount.amount, "receipt": receipt, "speed": "normal",
            "notes": {"flow_id": req.flow_id, "tenant_id": req.tenant_id}})
        return self._to_refund(refund)

    async def retrieve_refund(self, ref: RefundRef) -> GatewayRefund:
        return self._to_refund(await self._call(self.client.refund.fetch, ref.refund_id))

    def _to_refund(self, r: dict[str, Any]) -> GatewayRefund:
        return GatewayRefund(self.name, r["id"], REFUND_STATUS.get(r["status"], PAYMENT_PENDING),
                             Money(int(r["amount"]), str(r["currency"]).upper()),
                             "refund failed" if r["status"] == "failed" else None)

    async def create_payout(self, req: PayoutRequest) -> GatewayPayout:
        raise GatewayRefused("payouts go through another gateway (RazorpayX is not configured)")

    async def retrieve_payout(self, ref: PayoutRef) -> GatewayPayout:
        raise GatewayRefused("payouts go through another gateway (RazorpayX is not configured)")

    async def list_objects(self, kind: str, since: int) -> list[SeenObject]:
        """Orders (payments) and refunds created since ``since``, page by page."""
        if kind not in ("payment", "refund"):
            return []
        fetch = self.client.order.all if kind == "payment" else self.client.refund.all
        seen: list[SeenObject] = []
        skip = 0
        while True:
            page = await self._call(fetch, {"from": since, "count": PAGE, "skip": skip})
            items = page.get("items", [])
            for raw in items:
                known = self._to_payment(raw) if kind == "payment" else self._to_refund(raw)
                notes = raw.get("notes") or {}
                notes = notes if isinstance(notes, dict) else {}
                seen.append(SeenObject(kind, self.name, raw["id"], known.status, known.amount,
                                       notes.get("flow_id"), notes.get("tenant_id"),
                                       int(raw["created_at"])))
            if len(items) < PAGE:
                return seen
            skip += len(items)

    async def close(self) -> None:
        await asyncio.to_thread(self.client.session.close)
