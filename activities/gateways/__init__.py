"""Payment gateways behind one gateway-neutral interface."""

from __future__ import annotations

from typing import Protocol

from contracts.gateway import (
    CreatePaymentRequest,
    CreateRefundRequest,
    GatewayPayment,
    GatewayRefund,
    PaymentRef,
    RefundRef,
)
from contracts.reconcile import SeenObject


class GatewayRefused(Exception):
    """A permanent refusal (invalid request, card declined): retrying cannot help."""


class GatewayUnavailable(Exception):
    """A transient failure (timeout, 5xx, rate limit): retry with the same idempotency key."""


class PaymentGateway(Protocol):
    name: str

    async def create_payment(self, req: CreatePaymentRequest) -> GatewayPayment: ...

    async def retrieve_payment(self, ref: PaymentRef) -> GatewayPayment: ...

    async def cancel_payment(self, ref: PaymentRef) -> GatewayPayment: ...

    async def create_refund(self, req: CreateRefundRequest) -> GatewayRefund: ...

    async def retrieve_refund(self, ref: RefundRef) -> GatewayRefund: ...

    async def list_objects(self, kind: str, since: int) -> list[SeenObject]:
        """Every payment, refund or payout (``kind``) created since ``since`` (unix seconds),
        as the gateway lists them (its list calls, paginated)."""
        ...

    async def close(self) -> None: ...
