"""One outbound webhook delivery: retried with backoff by Temporal until the endpoint answers
2xx, gives up with 410 (the endpoint is disabled), or the day runs out."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.webhooks import DELIVER_WEBHOOK, GIVE_UP_WEBHOOK, DeliveryInput
    from workflows import policies


@workflow.defn(name="WebhookDeliveryWorkflow")
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, inp: DeliveryInput) -> str:
        try:
            return await workflow.execute_activity(DELIVER_WEBHOOK, inp, result_type=str,
                                                   **policies.WEBHOOK_DELIVERY)
        except ActivityError as e:
            reason = str(e.cause or e)
            await workflow.execute_activity(GIVE_UP_WEBHOOK, args=[inp, reason],
                                            **policies.LEDGER)
            return f"failed: {reason}"
