"""Refund: give back part or all of a paid order — to the wallet, or to the original method
(a gateway refund confirmed by its webhook). Above the tenant's threshold an admin approves
(maker-checker), the capacity held meanwhile. Never more than what was paid, ever promised."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.errors import ErrorCode, Failure
    from contracts.flow import FlowStatus
    from contracts.gateway import (
        PAYMENT_SUCCEEDED,
        CreateRefundRequest,
        GatewayRefund,
        RefundEvent,
        RefundRef,
    )
    from contracts.money import Money, format_amount
    from contracts.refund import RefundInput, RefundPlan, RefundReservation, RefundSettlement
    from workflows import activity_refs as act
    from workflows import console, policies
    from workflows.approvals import ApprovalMessages, Approvals, ending
    from workflows.cashback import claw_back
    from workflows.gateway_events import GatewayEvents, gateway_word
    from workflows.steps import DB_STEP_ERRORS, db_step
    from workflows.trail import FlowTrail, failure_of

ANSWERED = ("refunded", "refused", "rejected", "expired", "failed", "awaiting_approval",
            "awaiting_gateway")


@workflow.defn(name="RefundWorkflow")
class RefundWorkflow(ApprovalMessages):
    def __init__(self) -> None:
        self._input: RefundInput | None = None
        self._trail = FlowTrail("refund", "requested")
        self._approvals: Approvals | None = None
        self._plan: RefundPlan | None = None
        self._refund: GatewayRefund | None = None
        self._events: GatewayEvents[RefundEvent] = GatewayEvents(lambda e: e.refund_id, "refund")

    @workflow.run
    async def run(self, inp: RefundInput) -> str:
        self._input = inp
        self._approvals = Approvals(inp.admins, inp.requested_by, 1, "refund", self._trail)
        self._trail.step("requested")
        early = inp.needs_approval and workflow.patched("reserve-before-approval")
        if inp.needs_approval and not early and (failure := await self._approve(inp)):
            return await self._finish(ending(failure), failure, release=False)
        if failure := await self._reserve(inp):
            return await self._finish("refused", failure, release=False)
        if early and (failure := await self._approve(inp)):
            return await self._finish(ending(failure), failure, release=True)
        if self._plan and self._plan.card and (failure := await self._refund_card(inp, self._plan)):
            return await self._finish("failed", failure, release=True)
        await self._settle("refunded", None)
        if step := await claw_back(inp.tenant_id, inp.flow_id, inp.order_id, inp.amount):
            self._trail.step(step)
        return await self._finish("refunded", None, release=False)

    async def _approve(self, inp: RefundInput) -> Failure | None:  # None: an admin approved
        assert self._approvals is not None
        self._trail.state = "awaiting_approval"
        failure = await self._approvals.wait(inp.approval_window_seconds)
        self._trail.state = "awaiting_approval" if failure else "processing"  # until it ends
        return failure

    async def _reserve(self, inp: RefundInput) -> Failure | None:  # None: capacity reserved
        try:
            self._plan = await db_step(act.reserve_refund, RefundReservation(
                inp.tenant_id, inp.flow_id, inp.order_id, inp.amount.amount, inp.destination),
                first=True)  # in the task accepting `outcome` (workflows/steps.py)
        except DB_STEP_ERRORS as e:
            return failure_of(e, ErrorCode.INTERNAL_ERROR)
        self._trail.step("reserved")
        return None

    async def _refund_card(self, inp: RefundInput, plan: RefundPlan) -> Failure | None:
        """The gateway refund, confirmed by its webhook (or, at the deadline, by asking)."""
        assert plan.payment_id is not None
        self._trail.state = "awaiting_gateway"
        try:
            refund = self._refund = await workflow.execute_activity(
                act.create_refund, CreateRefundRequest(
                    inp.tenant_id, inp.flow_id, plan.payment_id,
                    Money(plan.card, inp.amount.currency), f"{inp.flow_id}:gateway-refund",
                    plan.gateway), **policies.GATEWAY)
        except ActivityError as e:
            return failure_of(e, ErrorCode.GATEWAY_REFUSED, "gateway refund refused")
        self._trail.step("gateway_refund_created")
        self._events.expect(refund.refund_id)
        word = await gateway_word(
            self._events, timedelta(seconds=inp.gateway_wait_seconds),
            lambda: workflow.execute_activity(act.retrieve_refund, RefundRef(
                plan.gateway, refund.refund_id), **policies.GATEWAY), created=refund)
        if word.status != PAYMENT_SUCCEEDED:
            return Failure(ErrorCode.REFUND_FAILED,
                           f"gateway refund {word.status}: {word.reason or 'no reason given'}")
        self._trail.step("gateway_refund_succeeded")
        return None

    async def _settle(self, outcome: str, status: str | None) -> None:
        inp, plan = self._input, self._plan or RefundPlan()
        assert inp is not None
        await db_step(act.settle_refund, RefundSettlement(
            tenant_id=inp.tenant_id, flow_id=inp.flow_id, order_id=inp.order_id,
            user_id=inp.user_id, currency=inp.amount.currency, outcome=outcome,
            wallet=plan.wallet, card=plan.card, reserved=inp.amount.amount,
            gateway=plan.gateway, status=status or outcome, error=self._trail.error))

    async def _finish(self, state: str, failure: Failure | None, release: bool) -> str:
        """Record the end; ``release`` gives back the capacity this refund had reserved."""
        self._trail.failure = failure
        if state != "refunded":
            await self._settle("released" if release else "closed", state)
        self._trail.end(state, failure)  # reported once the database says so
        await workflow.wait_condition(workflow.all_handlers_finished)
        return state

    @workflow.signal(name="refund_event", description=console.REFUND_EVENT)
    def refund_event(self, event: RefundEvent) -> None:
        self._events.receive(event)

    @workflow.update(name="outcome", description=console.OUTCOME)
    async def outcome(self) -> str:
        """Waits until the refund is done, refused, or waiting for an approval or the gateway."""
        await workflow.wait_condition(lambda: self._trail.state in ANSWERED)
        return self._trail.state

    @workflow.query(name="status", description=console.STATUS)
    def status(self) -> FlowStatus:
        inp = self._input
        assert inp is not None
        cur = inp.amount.currency
        details = {"order_id": inp.order_id, "destination": inp.destination,
                   "requested_by": inp.requested_by}
        if self._plan:
            details.update(wallet_part=format_amount(self._plan.wallet, cur),
                           card_part=format_amount(self._plan.card, cur))
        if self._refund:
            details["gateway_refund_id"] = self._refund.refund_id
        if self._approvals and inp.needs_approval:
            details.update(self._approvals.summary())
        details.update(self._events.details())
        return self._trail.status(
            inp, {"refund": format_amount(inp.amount.amount, cur), "currency": cur}, details)
