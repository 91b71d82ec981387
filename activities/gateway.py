"""Gateway activities: gateway-neutral calls, routed to the configured gateway by name. Every
object a flow creates (a payment, a refund, a payout) is recorded with its flow and amount
(``db/gateway_objects.py``), so the gateway's webhooks about it are routed by its id."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.gateways import GatewayRefused, GatewayUnavailable, PaymentGateway
from activities.gateways.payouts import NoPayoutProvider, PayoutProviders
from activities.refusals import refused
from contracts.errors import ErrorCode
from contracts.gateway import (
    CANCEL_PAYMENT,
    CREATE_PAYMENT,
    CREATE_PAYOUT,
    CREATE_REFUND,
    PAYMENT_FAILED,
    RETRIEVE_PAYMENT,
    RETRIEVE_PAYOUT,
    RETRIEVE_REFUND,
    REVERSAL_NOTHING,
    REVERSE_PAYOUT,
    CreatePaymentRequest,
    CreateRefundRequest,
    GatewayPayment,
    GatewayPayout,
    GatewayRefund,
    PaymentRef,
    PayoutRef,
    PayoutRequest,
    PayoutReversal,
    PayoutReversalRequest,
    RefundRef,
)
from contracts.money import Money
from db.gateway_objects import GatewayObject, GatewayObjectKind, GatewayObjectRepository
from db.payees import PayeeRepository

log = logging.getLogger(__name__)
T = TypeVar("T")
# What a gateway result may show in a log line (never client secrets or destinations).
_LOGGED = ("payment_id", "refund_id", "payout_id", "status", "amount", "failure_reason")


def _summary(result: Any) -> dict[str, Any]:
    return {k: str(getattr(result, k)) for k in _LOGGED if getattr(result, k, None) is not None}


class GatewayActivities:
    def __init__(self, gateways: dict[str, PaymentGateway],
                 sessions: async_sessionmaker[AsyncSession],
                 payouts: PayoutProviders | None = None):
        self.gateways = gateways
        self.sessions = sessions
        # for a lone statement: no BEGIN/COMMIT round trips (activities/ledger.py does the same)
        self.autocommit: AsyncEngine = sessions.kw["bind"].execution_options(
            isolation_level="AUTOCOMMIT")
        # payouts go through a provider chosen by method (gateways/payouts.py)
        self.payouts = payouts or PayoutProviders.of_gateways(gateways)

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

    async def _record(self, obj: GatewayObject, payee: str | None = None) -> None:
        """Remember which flow created the object, once: a retry (same gateway idempotency key,
        same object) records nothing twice. A failure here is retried like a gateway fault.
        ``payee``: the account a payout was made on (asked about it at the deadline)."""
        if payee is None:  # one statement, its own transaction: one round trip
            async with self.autocommit.connect() as conn:
                stored = await GatewayObjectRepository(conn).record(obj)
        else:  # the payout and its payee together
            async with self.sessions.begin() as session:
                stored = await GatewayObjectRepository(session).record(obj)
                await PayeeRepository(session).record_payout(obj.gateway, obj.object_id, payee,
                                                             obj.tenant_id, obj.flow_id)
        if stored.flow_id != obj.flow_id:
            log.error("gateway %s %s %s already belongs to flow %s, not %s", obj.gateway,
                      obj.kind.value, obj.object_id, stored.flow_id, obj.flow_id)

    @activity.defn(name=CREATE_PAYMENT)
    async def create_payment(self, req: CreatePaymentRequest) -> GatewayPayment:
        payment = await self._run(self._gateway(req.gateway).create_payment(req))
        await self._record(GatewayObject(req.tenant_id, payment.gateway, GatewayObjectKind.PAYMENT,
                                         payment.payment_id, req.flow_id, req.amount))
        return payment

    @activity.defn(name=RETRIEVE_PAYMENT)
    async def retrieve_payment(self, ref: PaymentRef) -> GatewayPayment:
        return await self._run(self._gateway(ref.gateway).retrieve_payment(ref))

    @activity.defn(name=CREATE_REFUND)
    async def create_refund(self, req: CreateRefundRequest) -> GatewayRefund:
        refund = await self._run(self._gateway(req.gateway).create_refund(req))
        await self._record(GatewayObject(req.tenant_id, refund.gateway, GatewayObjectKind.REFUND,
                                         refund.refund_id, req.flow_id, req.amount))
        return refund

    @activity.defn(name=RETRIEVE_REFUND)
    async def retrieve_refund(self, ref: RefundRef) -> GatewayRefund:
        return await self._run(self._gateway(ref.gateway).retrieve_refund(ref))

    @activity.defn(name=CREATE_PAYOUT)
    async def create_payout(self, req: PayoutRequest) -> GatewayPayout:
        """Through the provider of ``req.method`` to the payee ``req.destination`` names (a
        connected account); no provider for the method: a typed refusal."""
        payout = await self._run(self._pay_out(req))
        await self._record(GatewayObject(req.tenant_id, payout.gateway, GatewayObjectKind.PAYOUT,
                                         payout.payout_id, req.flow_id, req.amount),
                           payee=req.destination)
        return payout

    async def _pay_out(self, req: PayoutRequest) -> GatewayPayout:
        return await self.payouts.for_method(req.method).create_payout(req)

    @activity.defn(name=RETRIEVE_PAYOUT)
    async def retrieve_payout(self, ref: PayoutRef) -> GatewayPayout:
        async with self.sessions() as session:
            payee = await PayeeRepository(session).account_of_payout(ref.gateway, ref.payout_id)
        if payee is None:
            raise refused(ErrorCode.GATEWAY_REFUSED,
                          f"payout {ref.payout_id} was not recorded with its payee")
        return await self._run(self._ask_payout(ref, payee))

    async def _ask_payout(self, ref: PayoutRef, payee: str) -> GatewayPayout:
        return await self.payouts.named(ref.gateway).retrieve_payout(ref, payee)

    @activity.defn(name=REVERSE_PAYOUT)
    async def reverse_payout(self, req: PayoutReversalRequest) -> PayoutReversal:
        """A failed payout's money back from the payee's account to the platform's. A refusal
        is an answer (status failed), not an error: logged for operations and counted
        (``walletflow_payout_reversal_failures``); the flow records it and still returns the
        funds to the wallet. A transient fault is retried."""
        try:
            provider = self.payouts.for_method(req.method)
        except NoPayoutProvider:  # nothing was paid out by this method
            return PayoutReversal(req.gateway, None, REVERSAL_NOTHING,
                                  Money(0, req.amount.currency))
        try:
            return await self._run(provider.reverse_payout(req))
        except ApplicationError as e:
            if e.type != ErrorCode.GATEWAY_REFUSED.value:
                raise
            log.error("payout reversal of %s refused, the funds stay with the payee: %s",
                      req.flow_id, e.message, extra={"flow_id": req.flow_id,
                                                     "tenant_id": req.tenant_id})
            activity.metric_meter().create_counter(
                "walletflow_payout_reversal_failures",
                "Failed payouts whose transfer could not be reversed").add(1)
            return PayoutReversal(provider.name, None, PAYMENT_FAILED,
                                  Money(0, req.amount.currency), e.message)

    @activity.defn(name=CANCEL_PAYMENT)
    async def cancel_payment(self, ref: PaymentRef) -> GatewayPayment:
        return await self._run(self._gateway(ref.gateway).cancel_payment(ref))
