"""Determinism, two ways (temporalio `Replayer`, with the worker's own sandbox configuration):

* every flow this session has finished replays against today's code;
* the histories recorded in ``tests/histories/`` (one per flow type and final state, the
  longest of each, from the code as it was when they were recorded) still replay. A change
  that would break flows already running on a deployed version fails here: put it behind
  ``workflow.patched()``. Record them again, on purpose, with
  ``WALLETFLOW_RECORD_HISTORIES=1 python3 scripts/test.py``.

Both replay with the worker's own data converter (the session client's: payloads encrypted
with the development key ring, ``temporal_client.data_converter``); the recorded histories are
encrypted with the development key, so a replay with another ring, or none, fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from tests.conftest import TASK_QUEUE
from worker import WORKFLOWS, workflow_runner

HISTORIES = Path(__file__).parent / "histories"


async def _replay_failures(histories: list[WorkflowHistory], converter: DataConverter
                           ) -> list[str]:
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner(),
                        data_converter=converter)
    failures = []
    async with replayer.workflow_replay_iterator(_iter(histories)) as results:
        async for result in results:
            if result.replay_failure is not None:
                failures.append(f"{result.history.workflow_id}: {result.replay_failure}")
    return failures


async def test_finished_flows_replay_deterministically(temporal_env) -> None:
    client = temporal_env.client
    query = f"TaskQueue = '{TASK_QUEUE}' AND ExecutionStatus != 'Running'"
    histories = [await client.get_workflow_handle(w.id, run_id=w.run_id).fetch_history()
                 async for w in client.list_workflows(query, limit=400)]
    types = {_type(h) for h in histories}
    # Earlier modules ran orders, purchases, refunds, donations, campaigns (and top-ups).
    assert {"OrderPaymentWorkflow", "RefundWorkflow", "DonationWorkflow",
            "PurchaseCreditWorkflow"} <= types, types
    failures = await _replay_failures(histories, client.data_converter)
    assert not failures, failures[:3]
    assert len(histories) >= 20
    if os.environ.get("WALLETFLOW_RECORD_HISTORIES"):
        await _record(histories, client.data_converter)


async def test_recorded_histories_still_replay(temporal_env) -> None:
    files = sorted(HISTORIES.glob("*.json"))
    histories = [WorkflowHistory.from_json(f.stem, f.read_text()) for f in files]
    # Every flow type, and every way a top-up ends.
    assert {_type(h) for h in histories} == {getattr(w, "__temporal_workflow_definition").name
                                             for w in WORKFLOWS}
    assert {"TopUpWorkflow-completed", "TopUpWorkflow-failed", "TopUpWorkflow-expired"} <= {
        f.stem for f in files}
    failures = await _replay_failures(histories, temporal_env.client.data_converter)
    assert not failures, failures[:3]


def _type(h: WorkflowHistory) -> str:
    return h.events[0].workflow_execution_started_event_attributes.workflow_type.name


async def _ending(h: WorkflowHistory, converter: DataConverter) -> str:
    """The flow's final state (``completed``, ``failed``, ``rejected`` …) from its result, or how
    the workflow closed."""
    last = h.events[-1]
    if last.HasField("workflow_execution_completed_event_attributes"):
        encoded = last.workflow_execution_completed_event_attributes.result.payloads
        payloads = await converter.payload_codec.decode(encoded) if converter.payload_codec \
            else encoded
        result = json.loads(payloads[0].data) if payloads else None
        state = result.get("state") if isinstance(result, dict) else result
        if isinstance(state, str) and state.isidentifier():
            return state
    return last.WhichOneof("attributes").removeprefix("workflow_execution_").split("_event")[0]


async def _record(histories: list[WorkflowHistory], converter: DataConverter) -> None:
    """Keep the longest history per (flow type, final state)."""
    longest: dict[str, WorkflowHistory] = {}
    for h in histories:
        name = f"{_type(h)}-{await _ending(h, converter)}"
        if name not in longest or len(h.events) > len(longest[name].events):
            longest[name] = h
    HISTORIES.mkdir(exist_ok=True)
    for old in HISTORIES.glob("*.json"):
        old.unlink()
    for name, h in longest.items():
        (HISTORIES / f"{name}.json").write_text(h.to_json() + "\n")


async def _iter(histories):  # type: ignore[no-untyped-def]
    for h in histories:
        yield h
