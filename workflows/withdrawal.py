"""Withdrawal: hold the funds, wait for approval (maker-checker; two admins above the tenant's
threshold; expiry releases the hold), pay out through the gateway, then post — or take back
what a failed payout left with the payee (`payout_reversal`) and void, returning the funds."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.errors import ErrorCode, Failure
    from contracts.flow import FlowStatus
    from contracts.gateway import (
        PAYMENT_SUCCEEDED,
        GatewayPayout,
        PayoutEvent,
        PayoutRef,
        PayoutRequest,
        PayoutReversal,
    )
    from contracts.money import format_amount
    from contracts.withdrawal import WithdrawalInput, WithdrawalStep
    from workflows import activity_refs as act
    from workflows import console, policies
    from workflows.approvals import ApprovalMessages, Approvals, ending
    from workflows.gateway_events import GatewayEvents, gateway_word
    from workflows.payout_reversal import PATCH, reversal_details, reverse_failed_payout
    from workflows.trail import FlowTrail, failure_of

ANSWERED = ("awaiting_approval", "refused")


@workflow.defn(name="WithdrawalWorkflow")
class WithdrawalWorkflow(ApprovalMessages):
    def __init__(self) -> None:
        self._input: WithdrawalInput | None = None
        self._trail = FlowTrail("withdrawal", "requested")
        self._approvals: Approvals | None = None
        self._payout: GatewayPayout | None = None
        self._reversal: PayoutReversal | None = None
        self._events: GatewayEvents[PayoutEvent] = GatewayEvents(lambda e: e.payout_id, "payout")

    @workflow.run
    async def run(self, inp: WithdrawalInput) -> str:
        self._input = inp
        self._approvals = Approvals(inp.admins, inp.requested_by, inp.approvals_required,
                                    "withdrawal", self._trail)
        self._trail.step("requested")
        try:
            await workflow.execute_activity(act.hold_withdrawal,
                                            self._change("hold", "awaiting_approval"),
                                            **policies.LEDGER)
        except ActivityError as e:
            return await self._finish("refused", failure_of(e, ErrorCode.INTERNAL_ERROR), "none")
        self._trail.state = "awaiting_approval"
        self._trail.step("funds_held")
        if failure := await self._approvals.wait(inp.approval_window_seconds):
            return await self._finish(ending(failure), failure, "void")

        self._trail.state = "paying_out"
        await workflow.execute_activity(act.settle_withdrawal, self._change("none", "approved"),
                                        **policies.LEDGER)
        if failure := await self._pay_out(inp):  # money left with the payee comes back first
            if workflow.patched(PATCH):
                self._reversal = await reverse_failed_payout(inp, self._trail)
            return await self._finish("payout_failed", failure, "void")
        return await self._finish("paid", None, "post")

    async def _pay_out(self, inp: WithdrawalInput) -> Failure | None:
        """The payout, confirmed by its webhook (or, at the deadline, by asking the gateway)."""
        try:
            payout = self._payout = await workflow.execute_activity(
                act.create_payout, PayoutRequest(
                    inp.tenant_id, inp.flow_id, inp.amount, inp.method, inp.destination,
                    f"{inp.flow_id}:payout", inp.gateway), **policies.GATEWAY)
        except ActivityError as e:
            return failure_of(e, ErrorCode.GATEWAY_REFUSED, "payout refused")
        self._trail.step("payout_created")
        self._events.expect(payout.payout_id)
        word = await gateway_word(
            self._events, timedelta(seconds=inp.payout_wait_seconds),
            lambda: workflow.execute_activity(act.retrieve_payout, PayoutRef(
                payout.gateway, payout.payout_id), **policies.GATEWAY), created=payout)
        if word.status == PAYMENT_SUCCEEDED:
            return None
        reason = word.reason or ("not confirmed in time" if word.asked else "no reason given")
        return Failure(ErrorCode.PAYOUT_FAILED, f"payout {word.status}: {reason}")

    def _change(self, action: str, status: str, error: str | None = None) -> WithdrawalStep:
        inp = self._input
        assert inp is not None
        return WithdrawalStep(inp.tenant_id, inp.flow_id, inp.user_id, inp.amount, action,
                              status, inp.daily_max,
                              self._payout.payout_id if self._payout else None, error)

    async def _finish(self, state: str, failure: Failure | None, action: str) -> str:
        await workflow.execute_activity(
            act.settle_withdrawal,
            self._change(action, state, failure.detail if failure else None), **policies.LEDGER)
        self._trail.end(state, failure)  # reported once the ledger reflects it
        await workflow.wait_condition(workflow.all_handlers_finished)
        return state

    # -- messages (decisions: ApprovalMessages) -----------------------------------------------

    @workflow.signal(name="payout_event", description=console.PAYOUT_EVENT)
    def payout_event(self, event: PayoutEvent) -> None:
        self._events.receive(event)

    @workflow.update(name="outcome", description=console.OUTCOME)
    async def outcome(self) -> str:
        await workflow.wait_condition(lambda: self._trail.state in ANSWERED)
        return self._trail.state

    @workflow.query(name="status", description=console.STATUS)
    def status(self) -> FlowStatus:
        inp = self._input
        assert inp is not None
        cur = inp.amount.currency
        details = {"method": inp.method, "destination": inp.destination,
                   "requested_by": inp.requested_by,
                   **(self._approvals.summary() if self._approvals else {})}
        if self._payout:
            details["payout_id"] = self._payout.payout_id
        details.update(self._events.details())
        details.update(reversal_details(self._reversal))
        return self._trail.status(
            inp, {"amount": format_amount(inp.amount.amount, cur), "currency": cur}, details)
