"""Order-payment: pay an order from the wallet, in points, by card or split (wallet + card).
Wallet/points parts are held first, the card part is charged, then the holds are captured —
or everything done so far is undone (saga compensation) and the order fails with the reason."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.errors import ErrorCode, Failure
    from contracts.flow import FlowStatus
    from contracts.gateway import PAYMENT_SUCCEEDED, PaymentEvent
    from contracts.ledger import PostTransfersRequest, ResolveTransfersRequest
    from contracts.money import Money, format_amount
    from contracts.order import OrderPaymentInput, OrderStatusUpdate, OrderView
    from workflows import activity_refs as act
    from workflows import console, policies
    from workflows.payment import PaymentTrack, payment_request
    from workflows.steps import DB_STEP_ERRORS, db_step
    from workflows.trail import FlowTrail, failure_of
    from workflows.transfers import order_card_capture, order_holds

DONE = ("paid", "failed")


@workflow.defn(name="OrderPaymentWorkflow")
class OrderPaymentWorkflow:
    def __init__(self) -> None:
        self._input: OrderPaymentInput | None = None
        self._trail = FlowTrail("order_payment", "pending")
        self._card = PaymentTrack(self._trail)
        self._holds: list[str] = []
        self._expires_at = ""

    @workflow.run
    async def run(self, inp: OrderPaymentInput) -> str:
        self._input = inp
        self._expires_at = (workflow.now() + timedelta(seconds=inp.expires_in_seconds)).isoformat()
        self._trail.step("received")
        await self._record("processing", first=True)  # in the task accepting `outcome`
        failure = await self._hold_wallet_and_points(inp)
        if failure is None and inp.card_amount:
            failure = await self._charge_card(inp)
        if failure is not None:
            await self._void_holds(inp)  # undo what was done
            return await self._finish("failed", failure)
        await self._capture(inp)
        return await self._finish("paid", None)

    async def _hold_wallet_and_points(self, inp: OrderPaymentInput) -> Failure | None:
        holds = order_holds(inp)
        if not holds:
            return None
        try:
            await db_step(act.post_transfers, PostTransfersRequest(
                inp.tenant_id, inp.flow_id, holds, pending=True))
        except DB_STEP_ERRORS as e:
            return failure_of(e, ErrorCode.PAYMENT_FAILED)
        self._holds = [h.idempotency_key for h in holds]
        self._trail.step("funds_held")
        return None

    async def _charge_card(self, inp: OrderPaymentInput) -> Failure | None:
        """The card part: paid (None), or why not. An unpaid card payment is cancelled so it
        can no longer be paid; if it was paid meanwhile, the order goes on."""
        try:
            payment = await workflow.execute_activity(act.create_payment, payment_request(
                inp, Money(inp.card_amount, inp.amount.currency),
                f"walletflow order {inp.order_id}"), **policies.GATEWAY)
        except ActivityError as e:
            return failure_of(e, ErrorCode.GATEWAY_REFUSED, "card payment could not be created")
        self._card.created(payment)
        self._trail.state = "awaiting_payment"
        self._trail.step("card_payment_created")
        await self._record("processing", payment_id=payment.payment_id)
        word = await self._card.outcome(timedelta(seconds=inp.expires_in_seconds))
        if word.status != PAYMENT_SUCCEEDED:
            failure = self._card.refusal("card payment", "the card was not paid before the expiry",
                                         asked=word.asked)
            if not await self._card.cancel_unless_paid("card_canceled", "card_paid_before_cancel"):
                return failure
        self._trail.state = "processing"
        self._trail.step("card_paid")
        return None

    async def _capture(self, inp: OrderPaymentInput) -> None:
        """Every part succeeded: capture the holds and book the card part as revenue."""
        if self._holds:
            await db_step(act.resolve_transfers, ResolveTransfersRequest(
                inp.tenant_id, self._holds, "posted"))
        if inp.card_amount:
            await db_step(act.post_transfers, PostTransfersRequest(
                inp.tenant_id, inp.flow_id, order_card_capture(inp)))
        self._trail.step("captured")

    async def _void_holds(self, inp: OrderPaymentInput) -> None:
        """The compensation: void the holds. A card part that failed was already cancelled, and
        nothing can fail once the card is paid, so no captured card part needs a refund."""
        if self._holds:
            await db_step(act.resolve_transfers, ResolveTransfersRequest(
                inp.tenant_id, self._holds, "voided"))
            self._trail.step("holds_voided")

    async def _finish(self, state: str, failure: Failure | None) -> str:
        await self._record(state, error=failure.detail if failure else None)
        self._trail.end(state, failure)  # reported once the order row says so
        await workflow.wait_condition(workflow.all_handlers_finished)
        return state

    async def _record(self, status: str, error: str | None = None,
                      payment_id: str | None = None, first: bool = False) -> None:
        assert self._input is not None
        await db_step(act.record_order_status, OrderStatusUpdate(
            self._input.tenant_id, self._input.order_id, status, error, payment_id), first=first)

    # -- messages ---------------------------------------------------------------------------

    @workflow.signal(name="payment_event", description=console.PAYMENT_EVENT)
    def payment_event(self, event: PaymentEvent) -> None:
        """The card part's gateway webhook; deduplicated on the event id."""
        self._card.receive(event)

    @workflow.update(name="outcome", description=console.OUTCOME)
    async def outcome(self) -> OrderView:
        """Waits until the order is paid or failed, or its card part awaits the customer."""
        await workflow.wait_condition(lambda: self._trail.state in (*DONE, "awaiting_payment"))
        assert self._input is not None
        awaiting = self._card.payment is not None and self._trail.state == "awaiting_payment"
        return OrderView(self._input.flow_id, self._input.order_id, self._trail.state,
                         self._trail.error,
                         self._card.checkout(self._input.flow_id, self._expires_at)
                         if awaiting else None, error_code=self._trail.error_code)

    @workflow.query(name="status", description=console.STATUS)
    def status(self) -> FlowStatus:
        inp = self._input
        assert inp is not None
        cur = inp.amount.currency
        amounts = {"order": format_amount(inp.amount.amount, cur), "currency": cur,
                   "wallet": format_amount(inp.wallet_amount, cur),
                   "card": format_amount(inp.card_amount, cur), "points": str(inp.points)}
        return self._trail.status(inp, amounts, {"order_id": inp.order_id, "method": inp.method,
                                                 **self._card.details()})
