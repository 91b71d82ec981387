"""Top-up: add money to a wallet (or buy a PTS points package) through a payment gateway."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.errors import ErrorCode, Failure
    from contracts.events import EventOut
    from contracts.flow import FlowStatus
    from contracts.gateway import (
        PAYMENT_SUCCEEDED,
        CheckoutInfo,
        GatewayPayment,
        PaymentEvent,
    )
    from contracts.ledger import PostTransfersRequest
    from contracts.money import format_amount
    from contracts.topup import TopUpInput, TopUpResult
    from workflows import activity_refs as act
    from workflows import console, policies
    from workflows.payment import PaymentTrack, payment_request
    from workflows.trail import FlowTrail, failure_of
    from workflows.transfers import topup_credit

TERMINAL = ("completed", "failed", "expired")


@workflow.defn(name="TopUpWorkflow")
class TopUpWorkflow:
    def __init__(self) -> None:
        self._input: TopUpInput | None = None
        self._trail = FlowTrail("topup", "created")
        self._card = PaymentTrack(self._trail, check_amount=True, record_decision=True)
        self._expires_at = ""

    @workflow.run
    async def run(self, inp: TopUpInput) -> TopUpResult:
        self._input = inp
        self._expires_at = (workflow.now() + timedelta(seconds=inp.expires_in_seconds)).isoformat()
        self._trail.step("started")
        try:
            payment = await self._create_payment(inp)
        except (ActivityError, ApplicationError) as e:  # a local activity's failure is unwrapped
            return await self._finish("failed", failure_of(e, ErrorCode.GATEWAY_REFUSED,
                                                           "payment could not be created"))
        self._trail.step("payment_created")
        self._trail.state = "awaiting_payment"
        self._card.created(payment)  # a webhook that came early may have decided it already

        # The gateway's webhook, or at the expiry the gateway itself: a missed webhook never
        # loses a paid top-up.
        word = await self._card.outcome(timedelta(seconds=inp.expires_in_seconds),
                                        deadline_step="expiry_reached")
        if word.status == PAYMENT_SUCCEEDED and word.asked:
            self._trail.step("payment_found_by_status_poll")
        if word.status != PAYMENT_SUCCEEDED:
            # why, read before our own cancel, whose webhook arrives too
            failure = self._card.refusal("payment", "no payment before the expiry")
            if not await self._card.cancel_unless_paid("payment_canceled",
                                                       "payment_succeeded_before_cancel"):
                expired = failure.code == ErrorCode.EXPIRED
                return await self._finish("expired" if expired else "failed", failure)

        self._trail.state = "crediting"
        # topup.completed is recorded in the credit's own transaction (the outbox).
        await workflow.execute_local_activity(act.post_transfers, PostTransfersRequest(
            inp.tenant_id, inp.flow_id, topup_credit(inp),
            events=[self._event_out("completed", None)]), **policies.LEDGER)
        self._trail.step("wallet_credited")
        return await self._finish("completed", None, recorded=True)

    async def _create_payment(self, inp: TopUpInput) -> GatewayPayment:
        # A local activity: it runs inside the first workflow task, so the checkout answer
        # needs no activity round trip through the server (measured in bench/). Retries
        # reuse the Stripe idempotency key, so a re-execution creates nothing twice.
        return await workflow.execute_local_activity(act.create_payment, payment_request(
            inp, inp.charge, f"walletflow top-up {inp.flow_id}"), **policies.GATEWAY)

    def _event_out(self, state: str, error: str | None) -> EventOut:
        assert self._input is not None
        inp = self._input
        return EventOut(
            inp.tenant_id, f"topup:{inp.flow_id}",
            "topup.completed" if state == "completed" else "topup.failed",
            {"flow_id": inp.flow_id, "user_id": inp.user_id, "state": state,
             "amount": format_amount(inp.credit.amount, inp.credit.currency),
             "currency": inp.credit.currency, **({"error": error} if error else {})})

    async def _finish(self, state: str, failure: Failure | None,
                      recorded: bool = False) -> TopUpResult:
        """``recorded``: the event was already written with the ledger transfer."""
        error = failure.detail if failure else None
        if not recorded:
            await workflow.execute_activity(act.emit_event, self._event_out(state, error),
                                            **policies.LEDGER)
        self._trail.end(state, failure)  # reported once its event is recorded
        workflow.logger.info("top-up %s%s", state, f": {failure}" if failure else "")
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self._input is not None
        payment = self._card.payment
        return TopUpResult(
            flow_id=self._input.flow_id, state=state,
            payment_id=payment.payment_id if payment else None,
            credited=self._input.credit if state == "completed" else None,
            error=error, error_code=self._trail.error_code)

    # -- messages ---------------------------------------------------------------------------

    @workflow.signal(name="payment_event", description=console.PAYMENT_EVENT)
    def payment_event(self, event: PaymentEvent) -> None:
        """A verified gateway webhook. At-least-once: deduplicated on the event id."""
        self._card.receive(event)

    @workflow.update(name="checkout", description=console.CHECKOUT)
    async def checkout(self) -> CheckoutInfo:
        """What the client needs to pay; waits until the gateway payment exists."""
        await workflow.wait_condition(
            lambda: self._card.payment is not None or self._trail.state in TERMINAL)
        if self._card.payment is None:
            raise ApplicationError(self._trail.error or "payment could not be created",
                                   type=self._trail.error_code or ErrorCode.GATEWAY_REFUSED)
        assert self._input is not None
        return self._card.checkout(self._input.flow_id, self._expires_at)

    @workflow.query(name="status", description=console.STATUS)
    def status(self) -> FlowStatus:
        inp = self._input
        assert inp is not None
        amounts = {"charge": format_amount(inp.charge.amount, inp.charge.currency),
                   "charge_currency": inp.charge.currency,
                   "credit": format_amount(inp.credit.amount, inp.credit.currency),
                   "credit_currency": inp.credit.currency}
        details = {"expires_at": self._expires_at, "gateway": inp.gateway,
                   **self._card.details()}
        if inp.package:
            details["package"] = inp.package
        details.update(self._card.events.details())
        return self._trail.status(inp, amounts, details)
