"""Withdrawal: hold the funds, wait for approval (maker-checker; two admins above the tenant's
threshold; expiry releases the hold), pay out through the gateway, then post — or void and
return the funds."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.flow import FlowStatus, FlowStep
    from contracts.gateway import (
        CREATE_PAYOUT,
        PAYMENT_PENDING,
        PAYMENT_SUCCEEDED,
        RETRIEVE_PAYOUT,
        GatewayPayout,
        PayoutEvent,
        PayoutRef,
        PayoutRequest,
    )
    from contracts.money import format_amount
    from contracts.withdrawal import (
        WITHDRAWAL_HOLD,
        WITHDRAWAL_SETTLE,
        WithdrawalInput,
        WithdrawalStep,
    )
    from workflows import policies
    from workflows.approvals import ApprovalMessages, Approvals
    from workflows.gateway_events import GatewayEvents

ANSWERED = ("awaiting_approval", "refused")


@workflow.defn(name="WithdrawalWorkflow")
class WithdrawalWorkflow(ApprovalMessages):
    def __init__(self) -> None:
        self._input: WithdrawalInput | None = None
        self._state = "requested"
        self._error: str | None = None
        self._approvals: Approvals | None = None
        self._payout: GatewayPayout | None = None
        self._events: GatewayEvents[PayoutEvent] = GatewayEvents(lambda e: e.payout_id, "payout")
        self._steps: list[FlowStep] = []

    @workflow.run
    async def run(self, inp: WithdrawalInput) -> str:
        self._input = inp
        self._approvals = approvals = Approvals(inp.admins, inp.requested_by,
                                                inp.approvals_required, "withdrawal")
        self._step("requested")
        try:
            await workflow.execute_activity(WITHDRAWAL_HOLD, self._change("hold",
                                                                         "awaiting_approval"),
                                            **policies.LEDGER)
        except ActivityError as e:
            return await self._finish("refused", str(e.cause or e), "none")
        self._state = "awaiting_approval"
        approvals.open = True
        self._step("funds_held")

        try:
            await workflow.wait_condition(lambda: approvals.done,
                                          timeout=timedelta(seconds=inp.approval_window_seconds))
        except TimeoutError:
            return await self._finish("expired", "no decision within the approval window",
                                      "void")
        finally:
            approvals.open = False
        if approvals.rejection:
            return await self._finish("rejected", approvals.rejection, "void")

        self._state = "paying_out"
        await workflow.execute_activity(WITHDRAWAL_SETTLE, self._change("none", "approved"),
                                        **policies.LEDGER)
        paid, reason = await self._pay_out(inp)
        if not paid:
            return await self._finish("payout_failed", reason, "void")
        return await self._finish("paid", None, "post")

    async def _pay_out(self, inp: WithdrawalInput) -> tuple[bool, str | None]:
        try:
            self._payout = await workflow.execute_activity(
                CREATE_PAYOUT, PayoutRequest(inp.tenant_id, inp.flow_id, inp.amount, inp.method,
                                             inp.destination, f"{inp.flow_id}:payout",
                                             inp.gateway),
                result_type=GatewayPayout, **policies.GATEWAY)
        except ActivityError as e:
            return False, f"payout refused: {e.cause or e}"
        self._step("payout_created")
        self._events.expect(self._payout.payout_id)
        status, reason = self._payout.status, self._payout.failure_reason
        if status == PAYMENT_PENDING:
            try:
                await workflow.wait_condition(lambda: self._events.decisive is not None,
                                              timeout=timedelta(seconds=inp.payout_wait_seconds))
                event = self._events.decisive
                assert event is not None
                status, reason = event.status, event.failure_reason
            except TimeoutError:
                final = await workflow.execute_activity(
                    RETRIEVE_PAYOUT, PayoutRef(self._payout.gateway, self._payout.payout_id),
                    result_type=GatewayPayout, **policies.GATEWAY)
                status, reason = final.status, final.failure_reason or "not confirmed in time"
        return status == PAYMENT_SUCCEEDED, (None if status == PAYMENT_SUCCEEDED
                                              else f"payout {status}: {reason}")

    def _change(self, action: str, status: str, error: str | None = None) -> WithdrawalStep:
        inp = self._input
        assert inp is not None
        return WithdrawalStep(inp.tenant_id, inp.flow_id, inp.user_id, inp.amount, action,
                              status, inp.daily_max,
                              self._payout.payout_id if self._payout else None, error)

    async def _finish(self, state: str, error: str | None, action: str) -> str:
        await workflow.execute_activity(WITHDRAWAL_SETTLE, self._change(action, state, error),
                                        **policies.LEDGER)
        self._state, self._error = state, error  # reported once the ledger reflects it
        self._step(state)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return state

    # -- messages (decisions: ApprovalMessages) -----------------------------------------------

    @workflow.signal(name="payout_event")
    def payout_event(self, event: PayoutEvent) -> None:
        self._events.receive(event)

    @workflow.update(name="outcome")
    async def outcome(self) -> str:
        await workflow.wait_condition(lambda: self._state in ANSWERED)
        return self._state

    @workflow.query(name="status")
    def status(self) -> FlowStatus:
        inp = self._input
        assert inp is not None
        cur = inp.amount.currency
        details = {"method": inp.method, "destination": inp.destination,
                   "requested_by": inp.requested_by,
                   **(self._approvals.summary() if self._approvals else {})}
        if self._payout:
            details["payout_id"] = self._payout.payout_id
        if self._events.ignored:
            details["ignored_events"] = "; ".join(self._events.ignored[-10:])
        return FlowStatus(
            flow_id=inp.flow_id, kind="withdrawal", state=self._state, tenant_id=inp.tenant_id,
            user_id=inp.user_id, amounts={"amount": format_amount(inp.amount.amount, cur),
                                          "currency": cur},
            steps=list(self._steps), created_at=self._steps[0].at if self._steps else "",
            updated_at=self._steps[-1].at if self._steps else "", error=self._error,
            details=details)

    def _step(self, name: str) -> None:
        self._steps.append(FlowStep(name, workflow.now().isoformat()))
