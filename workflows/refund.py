"""Refund: give back part or all of a paid order — to the wallet, or to the original method
(a gateway refund confirmed by its webhook). Above the tenant's threshold an admin approves
first (maker-checker: the requester cannot approve). Never more than what was paid."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.flow import FlowStatus, FlowStep
    from contracts.gateway import (
        CREATE_REFUND,
        PAYMENT_PENDING,
        PAYMENT_SUCCEEDED,
        RETRIEVE_REFUND,
        CreateRefundRequest,
        GatewayRefund,
        RefundEvent,
        RefundRef,
    )
    from contracts.money import Money, format_amount
    from contracts.purchase import StoreEvent
    from contracts.refund import (
        REFUND_CLAWBACK,
        REFUND_RESERVE,
        REFUND_SETTLE,
        ClawbackRequest,
        ClawbackResult,
        RefundInput,
        RefundPlan,
        RefundReservation,
        RefundSettlement,
    )
    from workflows import policies
    from workflows.approvals import ApprovalMessages, Approvals
    from workflows.gateway_events import GatewayEvents

ANSWERED = ("refunded", "refused", "rejected", "expired", "failed", "awaiting_approval",
            "awaiting_gateway")


@workflow.defn(name="RefundWorkflow")
class RefundWorkflow(ApprovalMessages):
    def __init__(self) -> None:
        self._input: RefundInput | None = None
        self._state = "requested"
        self._error: str | None = None
        self._approvals: Approvals | None = None
        self._plan: RefundPlan | None = None
        self._refund: GatewayRefund | None = None
        self._events: GatewayEvents[RefundEvent] = GatewayEvents(lambda e: e.refund_id, "refund")
        self._steps: list[FlowStep] = []

    @workflow.run
    async def run(self, inp: RefundInput) -> str:
        self._input = inp
        self._approvals = approvals = Approvals(inp.admins, inp.requested_by, 1, "refund")
        self._step("requested")
        if inp.needs_approval:
            self._state = "awaiting_approval"
            approvals.open = True
            try:
                await workflow.wait_condition(lambda: approvals.done, timeout=timedelta(
                    seconds=inp.approval_window_seconds))
            except TimeoutError:
                return await self._finish("expired", "no decision within the approval window",
                                          release=False)
            finally:
                approvals.open = False
            if approvals.rejection:
                return await self._finish("rejected", approvals.rejection, release=False)
            self._state = "processing"

        try:
            self._plan = await workflow.execute_activity(
                REFUND_RESERVE, RefundReservation(inp.tenant_id, inp.flow_id, inp.order_id,
                                                  inp.amount.amount, inp.destination),
                result_type=RefundPlan, **policies.LEDGER)
        except ActivityError as e:
            return await self._finish("refused", str(e.cause or e), release=False)
        self._step("reserved")

        if self._plan.card and not await self._refund_card(inp, self._plan):
            return await self._finish("failed", self._error, release=True)
        await self._settle("refunded", None)
        await self._claw_back(inp)
        return await self._finish("refunded", None, release=False)

    async def _refund_card(self, inp: RefundInput, plan: RefundPlan) -> bool:
        """The gateway refund, confirmed by its webhook (or, at the deadline, by asking)."""
        assert plan.payment_id is not None
        self._state = "awaiting_gateway"
        try:
            self._refund = await workflow.execute_activity(
                CREATE_REFUND, CreateRefundRequest(
                    inp.tenant_id, inp.flow_id, plan.payment_id,
                    Money(plan.card, inp.amount.currency), f"{inp.flow_id}:gateway-refund",
                    plan.gateway),
                result_type=GatewayRefund, **policies.GATEWAY)
        except ActivityError as e:
            self._error = f"gateway refund refused: {e.cause or e}"
            return False
        self._step("gateway_refund_created")
        self._events.expect(self._refund.refund_id)
        if self._refund.status == PAYMENT_PENDING:
            try:
                await workflow.wait_condition(lambda: self._events.decisive is not None,
                                              timeout=timedelta(seconds=inp.gateway_wait_seconds))
                event = self._events.decisive
                assert event is not None
                status, reason = event.status, event.failure_reason
            except TimeoutError:
                final = await workflow.execute_activity(
                    RETRIEVE_REFUND, RefundRef(plan.gateway, self._refund.refund_id),
                    result_type=GatewayRefund, **policies.GATEWAY)
                status, reason = final.status, final.failure_reason
        else:
            status, reason = self._refund.status, self._refund.failure_reason
        if status != PAYMENT_SUCCEEDED:
            self._error = f"gateway refund {status}: {reason or 'no reason given'}"
            return False
        self._step("gateway_refund_succeeded")
        return True

    async def _settle(self, outcome: str, status: str | None) -> None:
        inp, plan = self._input, self._plan or RefundPlan()
        assert inp is not None
        await workflow.execute_activity(REFUND_SETTLE, RefundSettlement(
            tenant_id=inp.tenant_id, flow_id=inp.flow_id, order_id=inp.order_id,
            user_id=inp.user_id, currency=inp.amount.currency, outcome=outcome,
            wallet=plan.wallet, card=plan.card, reserved=inp.amount.amount,
            gateway=plan.gateway, status=status or outcome, error=self._error),
            result_type=str, **policies.LEDGER)

    async def _claw_back(self, inp: RefundInput) -> None:
        result = await workflow.execute_activity(
            REFUND_CLAWBACK, ClawbackRequest(inp.tenant_id, inp.flow_id, inp.order_id,
                                             inp.amount),
            result_type=ClawbackResult, **policies.LEDGER)
        if result.action == "signal_purchase" and result.purchase_flow_id:
            # A still-pending cashback is reduced by its own flow.
            await workflow.get_external_workflow_handle(result.purchase_flow_id).signal(
                "store_event", StoreEvent(f"refund:{inp.flow_id}", "refunded",
                                          refund=inp.amount))
        if result.action != "none":
            self._step(f"cashback_{result.action}")

    async def _finish(self, state: str, error: str | None, release: bool) -> str:
        """Record the end; ``release`` gives back the capacity this refund had reserved."""
        self._error = error
        if state != "refunded":
            await self._settle("released" if release else "closed", state)
        self._state = state  # reported once the database says so
        self._step(state)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return state

    # -- messages (decisions: ApprovalMessages) -----------------------------------------------

    @workflow.signal(name="refund_event")
    def refund_event(self, event: RefundEvent) -> None:
        self._events.receive(event)

    @workflow.update(name="outcome")
    async def outcome(self) -> str:
        """Waits until the refund is done, refused, or waiting for an approval or the gateway."""
        await workflow.wait_condition(lambda: self._state in ANSWERED)
        return self._state

    @workflow.query(name="status")
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
        if self._events.ignored:
            details["ignored_events"] = "; ".join(self._events.ignored[-10:])
        return FlowStatus(
            flow_id=inp.flow_id, kind="refund", state=self._state, tenant_id=inp.tenant_id,
            user_id=inp.user_id, amounts={"refund": format_amount(inp.amount.amount, cur),
                                          "currency": cur},
            steps=list(self._steps), created_at=self._steps[0].at if self._steps else "",
            updated_at=self._steps[-1].at if self._steps else "", error=self._error,
            details=details)

    def _step(self, name: str) -> None:
        self._steps.append(FlowStep(name, workflow.now().isoformat()))
