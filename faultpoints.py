"""Fault points: a process SIGKILLs itself exactly when it reaches a named point. The crash
sweep (tests/test_crash_sweep.py) uses them; everywhere else they do nothing. Stdlib only.

``WALLETFLOW_FAULT_POINT`` — unset: every ``reached`` is a no-op (the only cost is one dict
lookup). Else a comma-separated list of points, each ``<name>`` or ``<name>@<flow id>`` (only
in that flow). A name is one of

- ``before:<activity type>`` — an activity (or local activity) is about to run: nothing done;
- ``after:<activity type>`` — it returned: its side effect is committed, its result not yet
  reported to Temporal;
- either with ``#<activity id>`` — only that execution of the activity in its flow (Temporal's
  activity id: the same for every run of the same story, and kept across retries);
- ``api:after-claim`` — the API committed the Idempotency-Key claim and has not yet started
  the workflow.

Something that happens after a signal or an update (a payment's webhook, an approval) is
reached as ``before:`` the next activity the flow runs: workflow code itself runs in the
sandbox, where nothing may kill the process.

``WALLETFLOW_FAULT_TRACE`` — a file each reached point is appended to as one JSON line
(``point``, ``flow_id``, ``activity_id``, ``attempt``, ``local``, ``fired``, ``pid``,
``ts``): a clean run's record of what a flow executed, and after a kill, which point fired.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from typing import Any

POINT_ENV = "WALLETFLOW_FAULT_POINT"
TRACE_ENV = "WALLETFLOW_FAULT_TRACE"


@functools.lru_cache(maxsize=4)
def _armed(spec: str) -> frozenset[tuple[str, str | None]]:
    """``spec`` → {(name, flow id or None)}."""
    points = set()
    for item in spec.split(","):
        name, _, flow = item.strip().partition("@")
        if name:
            points.add((name, flow or None))
    return frozenset(points)


def matches(spec: str, name: str, flow_id: str | None, activity_id: str | None) -> str | None:
    """The armed point (as written in ``spec``) that ``name`` reached in ``flow_id`` fires, if
    any; ``name`` without ``#<activity id>`` — the id is matched when the point names one."""
    armed = _armed(spec)
    names = [name] + ([f"{name}#{activity_id}"] if activity_id else [])
    for candidate in names:
        for scope in (None, flow_id):
            if (candidate, scope) in armed:
                return candidate if scope is None else f"{candidate}@{scope}"
    return None


def reached(name: str, flow_id: str | None = None, activity_id: str | None = None,
            **detail: Any) -> None:
    """Record ``name`` in the trace, and die here (SIGKILL) when it is armed."""
    spec = os.environ.get(POINT_ENV)
    trace = os.environ.get(TRACE_ENV)
    if not spec and not trace:
        return
    fired = matches(spec, name, flow_id, activity_id) if spec else None
    if trace:
        line = json.dumps({"point": name, "flow_id": flow_id, "activity_id": activity_id,
                           **detail, "fired": fired, "pid": os.getpid(),
                           "ts": round(time.time(), 3)}, default=str)
        fd = os.open(trace, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (line + "\n").encode())  # in the kernel before the kill: never lost
        finally:
            os.close(fd)
    if fired:
        os.kill(os.getpid(), signal.SIGKILL)


def read_trace(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The lines a trace file holds (none when it does not exist yet)."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
