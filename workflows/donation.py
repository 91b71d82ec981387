"""Donation: money or points from the donor's wallet to a campaign; the donor earns points."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.donation import DONATE, DonationInput, DonationResult
    from workflows import policies


@workflow.defn(name="DonationWorkflow")
class DonationWorkflow:
    @workflow.run
    async def run(self, inp: DonationInput) -> DonationResult:
        try:
            result = await workflow.execute_activity(DONATE, inp, result_type=DonationResult,
                                                     **policies.LEDGER)
        except ActivityError as e:
            return DonationResult("refused", error=str(e.cause or e))
        if result.campaign_closed:
            # This donation reached the target: the campaign's own flow ends too.
            await workflow.get_external_workflow_handle(inp.campaign_flow_id).signal(
                "closed", "target_reached")
        return result
