"""Campaign: open until its end date (a durable timer, not a cron) or until a donation reaches
a capped target; then closed, with a campaign.closed event."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.donation import CampaignInput
    from workflows import console, policies
    from workflows.activity_refs import close_campaign


@workflow.defn(name="CampaignWorkflow")
class CampaignWorkflow:
    def __init__(self) -> None:
        self._closed: str | None = None

    @workflow.run
    async def run(self, inp: CampaignInput) -> str:
        remaining = (datetime.fromisoformat(inp.ends_at) - workflow.now()).total_seconds()
        try:
            await workflow.wait_condition(lambda: self._closed is not None,
                                          timeout=max(remaining, 0.001))
        except TimeoutError:
            await workflow.execute_activity(close_campaign, inp, **policies.LEDGER)
            self._closed = "ended"
        return self._closed or "ended"

    @workflow.signal(name="closed", description=console.CAMPAIGN_CLOSED)
    def closed(self, reason: str) -> None:
        """The donation that reached the target already closed the campaign in the database."""
        if self._closed is None:
            self._closed = reason

    @workflow.query(name="state", description=console.CAMPAIGN_STATE)
    def state(self) -> str:
        return self._closed or "open"
