"""What each flow kind costs Temporal: its history's events by type for one sample flow per
kind (workflow tasks, activities, local-activity markers, signals, updates, timers)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

COUNTED = {
    "WORKFLOW_TASK_COMPLETED": "workflow_tasks",
    "ACTIVITY_TASK_SCHEDULED": "activities",
    "MARKER_RECORDED": "local_activities",
    "WORKFLOW_EXECUTION_SIGNALED": "signals",
    "WORKFLOW_EXECUTION_UPDATE_ACCEPTED": "updates",
    "TIMER_STARTED": "timers",
    "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED": "signals_sent",
    "START_CHILD_WORKFLOW_EXECUTION_INITIATED": "children",
}


async def history_profile(client: Client, flow_id: str) -> dict[str, Any]:
    history = await client.get_workflow_handle(flow_id).fetch_history()
    types = Counter(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
                    for e in history.events)
    out: dict[str, Any] = {name: types.get(t, 0) for t, name in COUNTED.items()}
    out["events"] = len(history.events)
    return out


async def profiles(client: Client, samples: dict[str, list[str]]) -> dict[str, Any]:
    """Per kind: the profile of each sample flow (a kind may start several, e.g. the order a
    refund signals)."""
    out: dict[str, Any] = {}
    for kind, ids in samples.items():
        out[kind] = {fid: await history_profile(client, fid) for fid in ids}
    return out


def fmt_profiles(p: dict[str, Any]) -> list[str]:
    lines = []
    for kind, flows in p.items():
        for fid, c in flows.items():
            lines.append(f"{kind} ({fid.split(':', 1)[-1]}): " + ", ".join(
                f"{k} {v}" for k, v in c.items() if v))
    return lines
