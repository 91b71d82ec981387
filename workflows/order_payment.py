"""Order-payment: pay an order from the wallet, in points, by card or split (wallet + card).
Wallet/points parts are held first, the card part is charged, then the holds are captured —
or everything done so far is undone (saga compensation) and the order fails with the reason."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.flow import FlowStatus, FlowStep
    from contracts.gateway import (
        CANCEL_PAYMENT,
        CREATE_PAYMENT,
        PAYMENT_SUCCEEDED,
        RETRIEVE_PAYMENT,
        CheckoutInfo,
        CreatePaymentRequest,
        GatewayPayment,
        PaymentEvent,
        PaymentRef,
    )
    from contracts.ledger import (
        POST_TRANSFERS,
        RESOLVE_TRANSFERS,
        AccountRef,
        PostedTransfer,
        PostTransfersRequest,
        ResolveTransfersRequest,
        TransferRequest,
    )
    from contracts.money import POINTS, Money, format_amount
    from contracts.order import ORDER_RECORD, OrderPaymentInput, OrderStatusUpdate, OrderView
    from workflows import policies
    from workflows.gateway_events import GatewayEvents

DONE = ("paid", "failed")


class PaymentFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@workflow.defn(name="OrderPaymentWorkflow")
class OrderPaymentWorkflow:
    def __init__(self) -> None:
        self._input: OrderPaymentInput | None = None
        self._state = "pending"
        self._error: str | None = None
        self._holds: list[str] = []
        self._payment: GatewayPayment | None = None
        self._events: GatewayEvents[PaymentEvent] = GatewayEvents(lambda e: e.payment_id,
                                                                   "payment")
        self._steps: list[FlowStep] = []
        self._expires_at = ""

    @workflow.run
    async def run(self, inp: OrderPaymentInput) -> str:
        self._input = inp
        self._expires_at = (workflow.now() + timedelta(seconds=inp.expires_in_seconds)).isoformat()
        self._step("received")
        await self._record("processing")
        try:
            await self._hold_wallet_and_points(inp)
            if inp.card_amount:
                await self._charge_card(inp)
            await self._capture(inp)
        except PaymentFailed as e:
            await self._compensate()
            return await self._finish("failed", e.reason)
        return await self._finish("paid", None)

    async def _hold_wallet_and_points(self, inp: OrderPaymentInput) -> None:
        holds = []
        if inp.wallet_amount:
            holds.append(TransferRequest(
                f"{inp.flow_id}:hold:wallet", AccountRef("user_wallet", inp.user_id,
                                                         inp.amount.currency),
                AccountRef("merchant_revenue", "tenant", inp.amount.currency),
                inp.wallet_amount, inp.amount.currency, "order_payment",
                {"order_id": inp.order_id}))
        if inp.points:
            holds.append(TransferRequest(
                f"{inp.flow_id}:hold:points", AccountRef("user_points", inp.user_id, POINTS),
                AccountRef("merchant_revenue", "tenant", POINTS), inp.points, POINTS,
                "order_payment", {"order_id": inp.order_id}))
        if not holds:
            return
        try:
            await workflow.execute_activity(
                POST_TRANSFERS, PostTransfersRequest(inp.tenant_id, inp.flow_id, holds,
                                                     pending=True),
                result_type=list[PostedTransfer], **policies.LEDGER)
        except ActivityError as e:
            raise PaymentFailed(_reason(e)) from e
        self._holds = [h.idempotency_key for h in holds]
        self._step("funds_held")

    async def _charge_card(self, inp: OrderPaymentInput) -> None:
        try:
            self._payment = await workflow.execute_activity(
                CREATE_PAYMENT, CreatePaymentRequest(
                    tenant_id=inp.tenant_id, flow_id=inp.flow_id,
                    amount=Money(inp.card_amount, inp.amount.currency),
                    description=f"walletflow order {inp.order_id}",
                    idempotency_key=f"{inp.flow_id}:create-payment", gateway=inp.gateway),
                result_type=GatewayPayment, **policies.GATEWAY)
        except ActivityError as e:
            raise PaymentFailed(f"card payment could not be created: {_reason(e)}") from e
        self._state = "awaiting_payment"
        self._step("card_payment_created")
        self._events.expect(self._payment.payment_id)
        await self._record("processing", payment_id=self._payment.payment_id)
        try:
            await workflow.wait_condition(lambda: self._events.decisive is not None,
                                          timeout=timedelta(seconds=inp.expires_in_seconds))
            event = self._events.decisive
            assert event is not None
            reason = f"card payment {event.status}: {event.failure_reason or event.status}"
            paid = event.status == PAYMENT_SUCCEEDED
        except TimeoutError:
            reason = "the card was not paid before the expiry"
            paid = (await self._gateway(RETRIEVE_PAYMENT)).status == PAYMENT_SUCCEEDED
        if not paid:
            # Make sure it can no longer be paid; if it was paid meanwhile, the order goes on.
            final = await self._gateway(CANCEL_PAYMENT)
            self._step("card_canceled" if final.status != PAYMENT_SUCCEEDED
                       else "card_paid_before_cancel")
            if final.status != PAYMENT_SUCCEEDED:
                raise PaymentFailed(reason)
        self._state = "processing"
        self._step("card_paid")

    async def _capture(self, inp: OrderPaymentInput) -> None:
        """Every part succeeded: capture the holds and book the card part as revenue."""
        if self._holds:
            await workflow.execute_activity(
                RESOLVE_TRANSFERS, ResolveTransfersRequest(inp.tenant_id, self._holds, "posted"),
                result_type=list[PostedTransfer], **policies.LEDGER)
        if inp.card_amount:
            await workflow.execute_activity(
                POST_TRANSFERS, PostTransfersRequest(inp.tenant_id, inp.flow_id, [
                    TransferRequest(f"{inp.flow_id}:card", AccountRef(
                        "gateway_clearing", inp.gateway, inp.amount.currency),
                        AccountRef("merchant_revenue", "tenant", inp.amount.currency),
                        inp.card_amount, inp.amount.currency, "order_payment",
                        {"order_id": inp.order_id})]),
                result_type=list[PostedTransfer], **policies.LEDGER)
        self._step("captured")

    async def _compensate(self) -> None:
        """Undo what was done: void the holds. A card part that failed was already cancelled,
        and nothing can fail once the card is paid, so no captured card part needs a refund."""
        assert self._input is not None
        if self._holds:
            await workflow.execute_activity(
                RESOLVE_TRANSFERS, ResolveTransfersRequest(self._input.tenant_id, self._holds,
                                                           "voided"),
                result_type=list[PostedTransfer], **policies.LEDGER)
            self._step("holds_voided")

    async def _finish(self, state: str, error: str | None) -> str:
        await self._record(state, error=error)
        self._state, self._error = state, error  # reported once the order row says so
        self._step(state)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return state

    async def _record(self, status: str, error: str | None = None,
                      payment_id: str | None = None) -> None:
        assert self._input is not None
        await workflow.execute_activity(
            ORDER_RECORD, OrderStatusUpdate(self._input.tenant_id, self._input.order_id, status,
                                            error, payment_id), **policies.LEDGER)

    async def _gateway(self, activity: str) -> GatewayPayment:
        assert self._payment is not None
        return await workflow.execute_activity(
            activity, PaymentRef(self._payment.gateway, self._payment.payment_id,
                                 self._payment.amount.currency),
            result_type=GatewayPayment, **policies.GATEWAY)

    # -- messages ---------------------------------------------------------------------------

    @workflow.signal(name="payment_event")
    def payment_event(self, event: PaymentEvent) -> None:
        """The card part's gateway webhook; deduplicated on the event id."""
        self._events.receive(event)

    @workflow.update(name="outcome")
    async def outcome(self) -> OrderView:
        """Waits until the order is paid or failed, or its card part awaits the customer."""
        await workflow.wait_condition(lambda: self._state in (*DONE, "awaiting_payment"))
        assert self._input is not None
        payment = None
        if self._payment is not None and self._state == "awaiting_payment":
            payment = CheckoutInfo(self._input.flow_id, self._payment.gateway,
                                   self._payment.payment_id, self._payment.client_secret,
                                   self._payment.checkout_url, self._expires_at)
        return OrderView(self._input.flow_id, self._input.order_id, self._state, self._error,
                         payment)

    @workflow.query(name="status")
    def status(self) -> FlowStatus:
        inp = self._input
        assert inp is not None
        cur = inp.amount.currency
        return FlowStatus(
            flow_id=inp.flow_id, kind="order_payment", state=self._state,
            tenant_id=inp.tenant_id, user_id=inp.user_id,
            amounts={"order": format_amount(inp.amount.amount, cur), "currency": cur,
                     "wallet": format_amount(inp.wallet_amount, cur),
                     "card": format_amount(inp.card_amount, cur), "points": str(inp.points)},
            steps=list(self._steps), created_at=self._steps[0].at if self._steps else "",
            updated_at=self._steps[-1].at if self._steps else "", error=self._error,
            details={"order_id": inp.order_id, "method": inp.method,
                     **({"payment_id": self._payment.payment_id} if self._payment else {})},
        )

    def _step(self, name: str) -> None:
        self._steps.append(FlowStep(name, workflow.now().isoformat()))


def _reason(e: ActivityError) -> str:
    cause = e.cause
    if isinstance(cause, ApplicationError) and cause.type == "insufficient_funds":
        return f"insufficient_funds: {cause.message}"
    return str(cause or e)
