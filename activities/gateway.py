"""Gateway activities: gateway-neutral calls, routed to the configured gateway by name."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.gateways import GatewayRefused, GatewayUnavailable, PaymentGateway
from activities.refusals import refused
from contracts.errors import ErrorCode
from contracts.gateway import (
    CANCEL_PAYMENT,
    CREATE_PAYMENT,
    CREATE_PAYOUT,
    CREATE_REFUND,
    RETRIEVE_PAYMENT,
    RETRIEVE_PAYOUT,
    RETRIEVE_REFUND,
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

log = logging.getLogger(__name__)
T = TypeVar("T")
# What a gateway result may show in a log line (never client secrets or destinations).
_LOGGED = ("payment_id", "refund_id", "payout_id", "status", "amount", "failure_reason")


def _summary(result: Any) -> dict[str, Any]:
    return {k: str(getattr(result, k)) for k in _LOGGED if getattr(result, k, None) is not None}


class GatewayActivities:
    def __init__(self, gateways: dict[str, PaymentGateway]):
        self.gateways = gateways

    def _gateway(self, name: str) -> PaymentGateway:
        try:
            return self.gateways[name]
        except KeyError:
            raise refused(ErrorCode.GATEWAY_REFUSED, f"unknown gateway {name!r}") from None

    async def _run(self, call: Awaitable[T]) -> T:
        operation = activity.info().activity_type
        try:
            result = await call
        except GatewayRefused as e:
            log.warning("%s refused: %s", operation, e)
            raise refused(ErrorCode.GATEWAY_REFUSED, str(e)) from e
        except GatewayUnavailable as e:
            log.warning("%s unavailable (will retry): %s", operation, e)
            raise ApplicationError(str(e), type=ErrorCode.GATEWAY_UNAVAILABLE.value) from e
        log.info("%s ok", operation, extra={"gateway_result": _summary(result)})
        return result

    @activity.defn(name=CREATE_PAYMENT)
    async def create_payment(self, req: CreatePaymentRequest) -> GatewayPayment:
        return await self._run(self._gateway(req.gateway).create_payment(req))

    @activity.defn(name=RETRIEVE_PAYMENT)
    async def retrieve_payment(self, ref: PaymentRef) -> GatewayPayment:
        return await self._run(self._gateway(ref.gateway).retrieve_payment(ref))

    @activity.defn(name=CREATE_REFUND)
    async def create_refund(self, req: CreateRefundRequest) -> GatewayRefund:
        return await self._run(self._gateway(req.gateway).create_refund(req))

    @activity.defn(name=RETRIEVE_REFUND)
    async def retrieve_refund(self, ref: RefundRef) -> GatewayRefund:
        return await self._run(self._gateway(ref.gateway).retrieve_refund(ref))

    @activity.defn(name=CREATE_PAYOUT)
    async def create_payout(self, req: PayoutRequest) -> GatewayPayout:
        return await self._run(self._gateway(req.gateway).create_payout(req))

    @activity.defn(name=RETRIEVE_PAYOUT)
    async def retrieve_payout(self, ref: PayoutRef) -> GatewayPayout:
        return await self._run(self._gateway(ref.gateway).retrieve_payout(ref))

    @activity.defn(name=CANCEL_PAYMENT)
    async def cancel_payment(self, ref: PaymentRef) -> GatewayPayment:
        return await self._run(self._gateway(ref.gateway).cancel_payment(ref))
