"""Every flow this session has finished replays deterministically against today's code, with
the worker's own sandbox configuration (temporalio `Replayer`)."""

from __future__ import annotations

from temporalio.worker import Replayer

from tests.conftest import TASK_QUEUE
from worker import WORKFLOWS, workflow_runner


async def test_finished_flows_replay_deterministically(temporal_env) -> None:
    client = temporal_env.client
    query = f"TaskQueue = '{TASK_QUEUE}' AND ExecutionStatus != 'Running'"
    histories = [await client.get_workflow_handle(w.id, run_id=w.run_id).fetch_history()
                 async for w in client.list_workflows(query, limit=400)]
    types = {h.events[0].workflow_execution_started_event_attributes.workflow_type.name
             for h in histories}
    # Earlier modules ran orders, purchases, refunds, donations, campaigns (and top-ups).
    assert {"OrderPaymentWorkflow", "RefundWorkflow", "DonationWorkflow",
            "PurchaseCreditWorkflow"} <= types, types
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner())
    failures = []
    async with replayer.workflow_replay_iterator(_iter(histories)) as results:
        async for result in results:
            if result.replay_failure is not None:
                failures.append(f"{result.history.workflow_id}: {result.replay_failure}")
    assert not failures, failures[:3]
    assert len(histories) >= 20


async def _iter(histories):  # type: ignore[no-untyped-def]
    for h in histories:
        yield h
