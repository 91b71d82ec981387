"""The janitor, run by a Temporal Schedule every few minutes (``schedules.py``): reconcile the
ledger with the gateway, credit within minutes — not at its expiry — a flow whose payment the
gateway says succeeded while its webhooks were lost (signalled as the webhook would), and remove
claimed flow rows that never got a workflow. Each step is an activity; the flow only orders
them."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.reconcile import (
        SUCCEEDED_WITHOUT_LEDGER,
        JanitorInput,
        JanitorResult,
        ReconcileInput,
    )
    from workflows import activity_refs as act
    from workflows import policies


@workflow.defn(name="JanitorWorkflow")
class JanitorWorkflow:
    @workflow.run
    async def run(self, inp: JanitorInput) -> JanitorResult:
        result = JanitorResult()
        # Objects younger than stale_after_seconds are left alone: their webhooks may be on
        # their way.
        report = await workflow.execute_activity(
            act.reconcile, ReconcileInput(inp.tenant_id, inp.since_seconds,
                                          inp.stale_after_seconds), **policies.JANITOR)
        result.drifts = len(report.drifts)
        stuck = [d for d in report.drifts
                 if d.problem == SUCCEEDED_WITHOUT_LEDGER and d.kind == "payment"]
        if stuck:
            result.nudged = await workflow.execute_activity(act.nudge_paid, stuck,
                                                            **policies.JANITOR)
        result.orphans_removed = await workflow.execute_activity(
            act.remove_orphans, inp, **policies.JANITOR)
        workflow.logger.info("janitor: %d drifting, %d nudged, %d orphan rows removed",
                             result.drifts, len(result.nudged), len(result.orphans_removed))
        return result
