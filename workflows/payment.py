"""A gateway payment a flow waits for (a top-up, an order's card part): created, confirmed by its
webhook or, at the deadline, by asking the gateway, cancelled when unpaid so it can no longer be
paid, and what the client needs to pay it. Sandbox-pure."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.errors import ErrorCode, Failure
    from contracts.gateway import (
        PAYMENT_EXPIRED_REASON,
        PAYMENT_SUCCEEDED,
        CheckoutInfo,
        CreatePaymentRequest,
        GatewayPayment,
        PaymentEvent,
        PaymentRef,
    )
    from contracts.money import Money
    from contracts.order import OrderPaymentInput
    from contracts.topup import TopUpInput
    from workflows import policies
    from workflows.activity_refs import cancel_payment, retrieve_payment
    from workflows.gateway_events import GatewayEvents, GatewayWord, gateway_word
    from workflows.trail import FlowTrail


def payment_request(inp: TopUpInput | OrderPaymentInput, amount: Money,
                    description: str) -> CreatePaymentRequest:
    """The flow's gateway payment, created now: it can be paid until the flow's expiry (a
    hosted checkout is told so, with the return URLs the flow was given)."""
    expires_at = workflow.now() + timedelta(seconds=inp.expires_in_seconds)
    return CreatePaymentRequest(
        tenant_id=inp.tenant_id, flow_id=inp.flow_id, amount=amount, description=description,
        idempotency_key=f"{inp.flow_id}:create-payment", gateway=inp.gateway,
        expires_at=int(expires_at.timestamp()), expires_in_seconds=inp.expires_in_seconds,
        success_url=inp.success_url, cancel_url=inp.cancel_url)


class PaymentTrack:
    def __init__(self, trail: FlowTrail, check_amount: bool = False,
                 record_decision: bool = False) -> None:
        """``check_amount``: a webhook naming another amount than the payment's is ignored;
        ``record_decision``: the decisive webhook is a step (``gateway_succeeded`` …)."""
        self.trail, self._record_decision = trail, record_decision
        self.payment: GatewayPayment | None = None
        self.events: GatewayEvents[PaymentEvent] = GatewayEvents(
            lambda e: e.payment_id, "payment", self._other_amount if check_amount else None)

    def created(self, payment: GatewayPayment) -> None:
        """The payment exists: the webhooks that came early are matched against it."""
        self.payment = payment
        if self.events.expect(payment.payment_id):
            self._decided()

    def receive(self, event: PaymentEvent) -> None:
        """A verified gateway webhook (at least once: deduplicated on the event id)."""
        if self.events.receive(event):
            self._decided()

    def _decided(self) -> None:
        if self._record_decision and self.events.decisive is not None:
            self.trail.step(f"gateway_{self.events.decisive.status}")

    async def outcome(self, wait: timedelta, deadline_step: str | None = None) -> GatewayWord:
        """The gateway's webhook within ``wait``, else its answer when asked at the deadline
        (``deadline_step`` is recorded first)."""
        async def ask() -> GatewayPayment:
            if deadline_step:
                self.trail.step(deadline_step)
            return await workflow.execute_activity(retrieve_payment, self.ref(),
                                                   **policies.GATEWAY)
        return await gateway_word(self.events, wait, ask)

    async def cancel_unless_paid(self, canceled_step: str, paid_step: str) -> bool:
        """Cancel the payment so it can no longer be paid; True when it was paid meanwhile."""
        result = await workflow.execute_activity(cancel_payment, self.ref(), **policies.GATEWAY)
        paid = result.status == PAYMENT_SUCCEEDED
        self.trail.step(paid_step if paid else canceled_step)
        return paid

    def refusal(self, what: str, expired: str, asked: bool = False) -> Failure:
        """Why an unpaid payment is not paid: the gateway's decisive webhook (unless ``asked``:
        the deadline came first, or the gateway let it expire), else no payment before the
        expiry."""
        decisive = self.events.decisive
        if decisive is None or asked or decisive.failure_reason == PAYMENT_EXPIRED_REASON:
            return Failure(ErrorCode.EXPIRED, expired)
        return Failure(ErrorCode.PAYMENT_FAILED, f"{what} {decisive.status}: "
                       f"{decisive.failure_reason or decisive.status}")

    def ref(self) -> PaymentRef:
        assert self.payment is not None
        return PaymentRef(self.payment.gateway, self.payment.payment_id,
                          self.payment.amount.currency)

    def checkout(self, flow_id: str, expires_at: str) -> CheckoutInfo:
        assert self.payment is not None
        return CheckoutInfo(flow_id, self.payment.gateway, self.payment.payment_id,
                            self.payment.client_secret, self.payment.checkout_url, expires_at)

    def details(self) -> dict[str, str]:
        return {"payment_id": self.payment.payment_id} if self.payment else {}

    def _other_amount(self, event: PaymentEvent) -> str | None:
        assert self.payment is not None
        if event.amount is not None and event.amount != self.payment.amount:
            return f"amount {event.amount} differs"
        return None
