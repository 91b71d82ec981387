"""One outbound webhook delivery: retried with backoff by Temporal until the endpoint answers
2xx, gives up with 410 (the endpoint is disabled), or the day runs out."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.webhooks import DeliveryInput
    from workflows import activity_refs as act
    from workflows import policies


@workflow.defn(name="WebhookDeliveryWorkflow")
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, inp: DeliveryInput) -> str:
        try:
            return await workflow.execute_activity(act.deliver_webhook, inp,
                                                   **policies.WEBHOOK_DELIVERY)
        except ActivityError as e:
            reason = str(e.cause or e)
            await workflow.execute_activity(act.give_up_webhook, args=[inp, reason],
                                            **policies.LEDGER)
            return f"failed: {reason}"
