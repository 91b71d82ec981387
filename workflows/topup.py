"""Top-up: add money to a wallet (or buy a PTS points package) through a payment gateway."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from contracts.events import EMIT_EVENT, EventOut
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
        AccountRef,
        PostedTransfer,
        PostTransfersRequest,
        TransferRequest,
    )
    from contracts.money import POINTS, format_amount
    from contracts.topup import TopUpInput, TopUpResult
    from workflows import policies
    from workflows.gateway_events import GatewayEvents

TERMINAL = ("completed", "failed", "expired")


@workflow.defn(name="TopUpWorkflow")
class TopUpWorkflow:
    def __init__(self) -> None:
        self._input: TopUpInput | None = None
        self._payment: GatewayPayment | None = None
        self._events: GatewayEvents[PaymentEvent] = GatewayEvents(
            lambda e: e.payment_id, "payment", self._other_amount)
        self._state = "created"
        self._error: str | None = None
        self._steps: list[FlowStep] = []
        self._expires_at = ""

    # -- the story --------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: TopUpInput) -> TopUpResult:
        self._input = inp
        self._expires_at = (workflow.now() + timedelta(seconds=inp.expires_in_seconds)).isoformat()
        self._step("started")

        try:
            self._payment = await self._create_payment(inp)
        except (ActivityError, ApplicationError) as e:  # a local activity's failure is unwrapped
            return await self._finish("failed", f"payment could not be created: {_cause(e)}")
        self._step("payment_created")
        self._state = "awaiting_payment"
        if self._events.expect(self._payment.payment_id):
            self._decided()

        paid = await self._wait_for_payment(inp)
        if not paid:
            decisive = self._events.decisive  # before our own cancel, whose webhook arrives too
            final = await self._cancel_or_collect()
            if final.status != PAYMENT_SUCCEEDED:
                if decisive is not None:
                    reason = decisive.failure_reason or decisive.status
                    return await self._finish("failed", f"payment {decisive.status}: {reason}")
                return await self._finish("expired", "no payment before the expiry")

        self._state = "crediting"
        # topup.completed is recorded in the credit's own transaction (the outbox).
        await self._credit(inp, [self._event_out("completed", None)])
        return await self._finish("completed", None, recorded=True)

    async def _create_payment(self, inp: TopUpInput) -> GatewayPayment:
        # A local activity: it runs inside the first workflow task, so the checkout answer
        # needs no activity round trip through the server (measured in bench/). Retries
        # reuse the Stripe idempotency key, so a re-execution creates nothing twice.
        return await workflow.execute_local_activity(
            CREATE_PAYMENT,
            CreatePaymentRequest(
                tenant_id=inp.tenant_id,
                flow_id=inp.flow_id,
                amount=inp.charge,
                description=f"walletflow top-up {inp.flow_id}",
                idempotency_key=f"{inp.flow_id}:create-payment",
                gateway=inp.gateway,
            ),
            result_type=GatewayPayment,
            **policies.GATEWAY,
        )

    async def _wait_for_payment(self, inp: TopUpInput) -> bool:
        """Wait for the gateway's webhook; at the expiry ask the gateway itself, so a missed
        webhook never loses a paid top-up."""
        try:
            await workflow.wait_condition(
                lambda: self._events.decisive is not None,
                timeout=timedelta(seconds=inp.expires_in_seconds),
            )
        except TimeoutError:
            self._step("expiry_reached")
            status = await self._gateway(RETRIEVE_PAYMENT)
            if status.status == PAYMENT_SUCCEEDED:
                self._step("payment_found_by_status_poll")
                return True
            return False
        decisive = self._events.decisive
        return decisive is not None and decisive.status == PAYMENT_SUCCEEDED

    async def _cancel_or_collect(self) -> GatewayPayment:
        """Cancel the payment so it can no longer be paid; if it was paid meanwhile, say so."""
        result = await self._gateway(CANCEL_PAYMENT)
        self._step("payment_canceled" if result.status != PAYMENT_SUCCEEDED
                   else "payment_succeeded_before_cancel")
        return result

    async def _credit(self, inp: TopUpInput, events: list[EventOut]) -> list[PostedTransfer]:
        clearing = AccountRef("gateway_clearing", inp.gateway, inp.charge.currency)
        if inp.credit.currency == POINTS:
            transfers = [
                TransferRequest(f"{inp.flow_id}:charge", clearing,
                                AccountRef("merchant_revenue", "tenant", inp.charge.currency),
                                inp.charge.amount, inp.charge.currency, "points_purchase"),
                TransferRequest(f"{inp.flow_id}:points",
                                AccountRef("points_issuance", "tenant", POINTS),
                                AccountRef("user_points", inp.user_id, POINTS),
                                inp.credit.amount, POINTS, "points_purchase",
                                {"package": inp.package or ""}),
            ]
        else:
            transfers = [
                TransferRequest(f"{inp.flow_id}:credit", clearing,
                                AccountRef("user_wallet", inp.user_id, inp.credit.currency),
                                inp.credit.amount, inp.credit.currency, "topup"),
            ]
        posted = await workflow.execute_local_activity(
            POST_TRANSFERS,
            PostTransfersRequest(inp.tenant_id, inp.flow_id, transfers, events=events),
            result_type=list[PostedTransfer],
            **policies.LEDGER,
        )
        self._step("wallet_credited")
        return posted

    def _event_out(self, state: str, error: str | None) -> EventOut:
        assert self._input is not None
        inp = self._input
        return EventOut(
            inp.tenant_id, f"topup:{inp.flow_id}",
            "topup.completed" if state == "completed" else "topup.failed",
            {"flow_id": inp.flow_id, "user_id": inp.user_id, "state": state,
             "amount": format_amount(inp.credit.amount, inp.credit.currency),
             "currency": inp.credit.currency, **({"error": error} if error else {})})

    async def _finish(self, state: str, error: str | None,
                      recorded: bool = False) -> TopUpResult:
        """``recorded``: the event was already written with the ledger transfer."""
        if not recorded:
            await workflow.execute_activity(EMIT_EVENT, self._event_out(state, error),
                                            **policies.LEDGER)
        self._state, self._error = state, error  # reported once its event is recorded
        self._step(state)
        workflow.logger.info("top-up %s%s", state, f": {error}" if error else "")
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self._input is not None
        return TopUpResult(
            flow_id=self._input.flow_id,
            state=state,
            payment_id=self._payment.payment_id if self._payment else None,
            credited=self._input.credit if state == "completed" else None,
            error=error,
        )

    async def _gateway(self, activity: str) -> GatewayPayment:
        assert self._payment is not None
        ref = PaymentRef(self._payment.gateway, self._payment.payment_id,
                         self._payment.amount.currency)
        return await workflow.execute_activity(activity, ref, result_type=GatewayPayment,
                                               **policies.GATEWAY)

    # -- messages ---------------------------------------------------------------------------

    @workflow.signal(name="payment_event")
    def payment_event(self, event: PaymentEvent) -> None:
        """A verified gateway webhook. At-least-once: deduplicated on the event id."""
        if self._events.receive(event):
            self._decided()

    def _decided(self) -> None:
        assert self._events.decisive is not None
        self._step(f"gateway_{self._events.decisive.status}")

    def _other_amount(self, event: PaymentEvent) -> str | None:
        assert self._payment is not None
        if event.amount is not None and event.amount != self._payment.amount:
            return f"amount {event.amount} differs"
        return None

    @workflow.update(name="checkout")
    async def checkout(self) -> CheckoutInfo:
        """What the client needs to pay; waits until the gateway payment exists."""
        await workflow.wait_condition(lambda: self._payment is not None or self._state in TERMINAL)
        if self._payment is None:
            raise ApplicationError(self._error or "payment could not be created",
                                   type="gateway_refused")
        assert self._input is not None
        return CheckoutInfo(
            flow_id=self._input.flow_id,
            gateway=self._payment.gateway,
            payment_id=self._payment.payment_id,
            client_secret=self._payment.client_secret,
            checkout_url=self._payment.checkout_url,
            expires_at=self._expires_at,
        )

    @workflow.query(name="status")
    def status(self) -> FlowStatus:
        inp = self._input
        assert inp is not None
        amounts = {"charge": format_amount(inp.charge.amount, inp.charge.currency),
                   "charge_currency": inp.charge.currency,
                   "credit": format_amount(inp.credit.amount, inp.credit.currency),
                   "credit_currency": inp.credit.currency}
        details = {"expires_at": self._expires_at, "gateway": inp.gateway}
        if self._payment:
            details["payment_id"] = self._payment.payment_id
        if inp.package:
            details["package"] = inp.package
        if self._events.ignored:
            details["ignored_events"] = "; ".join(self._events.ignored[-10:])
        return FlowStatus(
            flow_id=inp.flow_id, kind="topup", state=self._state, tenant_id=inp.tenant_id,
            user_id=inp.user_id, amounts=amounts, steps=list(self._steps),
            created_at=self._steps[0].at if self._steps else "",
            updated_at=self._steps[-1].at if self._steps else "",
            error=self._error, details=details,
        )

    def _step(self, name: str) -> None:
        self._steps.append(FlowStep(name, workflow.now().isoformat()))


def _cause(e: ActivityError | ApplicationError) -> str:
    """The activity's own failure message (e.g. the gateway's refusal). A regular activity's
    failure comes wrapped in an ActivityError; a local activity's comes as it was raised."""
    err = e.cause if isinstance(e, ActivityError) and e.cause else e
    return err.message if isinstance(err, FailureError) else str(err)
