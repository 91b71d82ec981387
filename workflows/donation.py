"""Donation: money or points from the donor's wallet to a campaign; the donor earns points.

The story: move donor → campaign (one transaction that locks the campaign, refuses a closed or
ended campaign or an amount beyond a capped target, and closes the campaign when this donation
reaches its capped target) → award the donor's points → tell the campaign's own flow it closed
→ announce ``donation.completed``. Every step is idempotent (keys from the flow id)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.donation import DonationInput, DonationMoved, DonationResult
    from contracts.errors import ErrorCode
    from contracts.events import EventOut
    from contracts.flow import FlowStatus
    from contracts.money import format_amount
    from workflows import console
    from workflows.activity_refs import award_donation_points, emit_event, transfer_donation
    from workflows.steps import DB_STEP_ERRORS, db_step
    from workflows.trail import FlowTrail, failure_of


@workflow.defn(name="DonationWorkflow")
class DonationWorkflow:
    def __init__(self) -> None:
        self._input: DonationInput | None = None
        self._trail = FlowTrail("donation", "processing")

    @workflow.run
    async def run(self, inp: DonationInput) -> DonationResult:
        self._input = inp
        self._trail.step("started")
        try:
            moved: DonationMoved = await db_step(transfer_donation, inp)
        except DB_STEP_ERRORS as e:
            failure = failure_of(e, ErrorCode.INTERNAL_ERROR)
            self._trail.end("refused", failure)
            return DonationResult("refused", error=failure.detail, error_code=failure.code)
        self._trail.step("donated")
        points = await db_step(award_donation_points, inp)
        self._trail.step("points_awarded")
        if moved.campaign_closed:
            # This donation reached the target: the campaign's own flow ends too.
            await workflow.get_external_workflow_handle(inp.campaign_flow_id).signal(
                "closed", "target_reached")
        await db_step(emit_event, _completed(inp))
        self._trail.end("completed")
        return DonationResult("completed", points=points, campaign_closed=moved.campaign_closed)

    @workflow.query(name="status", description=console.STATUS)
    def status(self) -> FlowStatus:
        inp = self._input
        assert inp is not None
        amount = {"amount": format_amount(inp.amount.amount, inp.amount.currency),
                  "currency": inp.amount.currency}
        return self._trail.status(inp, amount, {"campaign_id": inp.campaign_id})


def _completed(inp: DonationInput) -> EventOut:
    return EventOut(inp.tenant_id, f"donation.completed:{inp.flow_id}", "donation.completed",
                    {"campaign_id": inp.campaign_id, "user_id": inp.user_id,
                     "currency": inp.amount.currency,
                     "amount": format_amount(inp.amount.amount, inp.amount.currency)})
