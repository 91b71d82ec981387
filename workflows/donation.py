"""Donation: money or points from the donor's wallet to a campaign; the donor earns points.

The story: move donor → campaign (one transaction that locks the campaign, refuses a closed or
ended campaign or an amount beyond a capped target, and closes the campaign when this donation
reaches its capped target) → award the donor's points → tell the campaign's own flow it closed
→ announce ``donation.completed``. Every step is idempotent (keys from the flow id)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.donation import DonationInput, DonationMoved, DonationResult
    from contracts.errors import ErrorCode
    from contracts.events import EventOut
    from contracts.money import format_amount
    from workflows import policies
    from workflows.activity_refs import award_donation_points, emit_event, transfer_donation
    from workflows.trail import failure_of


@workflow.defn(name="DonationWorkflow")
class DonationWorkflow:
    @workflow.run
    async def run(self, inp: DonationInput) -> DonationResult:
        try:
            moved: DonationMoved = await workflow.execute_activity(
                transfer_donation, inp, **policies.LEDGER)
        except ActivityError as e:
            failure = failure_of(e, ErrorCode.INTERNAL_ERROR)
            return DonationResult("refused", error=failure.detail, error_code=failure.code)
        points = await workflow.execute_activity(award_donation_points, inp, **policies.LEDGER)
        if moved.campaign_closed:
            # This donation reached the target: the campaign's own flow ends too.
            await workflow.get_external_workflow_handle(inp.campaign_flow_id).signal(
                "closed", "target_reached")
        await workflow.execute_activity(emit_event, _completed(inp), **policies.LEDGER)
        return DonationResult("completed", points=points, campaign_closed=moved.campaign_closed)


def _completed(inp: DonationInput) -> EventOut:
    return EventOut(inp.tenant_id, f"donation.completed:{inp.flow_id}", "donation.completed",
                    {"campaign_id": inp.campaign_id, "user_id": inp.user_id,
                     "currency": inp.amount.currency,
                     "amount": format_amount(inp.amount.amount, inp.amount.currency)})
