"""Flow metrics from inside workflows: started and finished (by outcome) per flow kind, through
Temporal's metric meter, so they appear on the worker's Prometheus endpoint beside the SDK's
own and are never counted twice on replay."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)


class _FlowMetrics(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        meter = workflow.metric_meter()
        kind = {"kind": workflow.info().workflow_type}
        meter.create_counter("walletflow_flows_started", "Flows started").add(1, kind)
        try:
            result = await self.next.execute_workflow(input)
        except BaseException:
            meter.create_counter("walletflow_flows_finished", "Flows finished").add(
                1, {**kind, "outcome": "error"})
            raise
        outcome = getattr(result, "state", None) or (
            result.split(":")[0] if isinstance(result, str) else "completed")
        meter.create_counter("walletflow_flows_finished", "Flows finished").add(
            1, {**kind, "outcome": str(outcome)[:40]})
        return result


class FlowMetricsInterceptor(Interceptor):
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput
                                   ) -> type[WorkflowInboundInterceptor]:
        return _FlowMetrics
