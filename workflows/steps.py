"""A flow's short database steps (one transaction each: a ledger hold, post or void, a record's
status, an outbox event) run as *local* activities, as the top-up's ledger post does: inside
the workflow task, with no schedule → poll → complete → new task round trip through the
Temporal server (bench/README.md, "What each change bought"). They stay idempotent (keys from
the flow id), so a re-execution after a worker crash writes nothing twice. Gateway calls and
anything that waits stay regular activities.

Flows started before this change recorded regular activities: ``db_step`` asks
``workflow.patched(LOCAL_DB_STEPS)`` (memoised per workflow run by the SDK), so their replay
keeps the old commands. A local activity's final failure reaches the caller as the activity's
own ``ApplicationError``, a regular one's wrapped in an ``ActivityError``: callers catch both
(``DB_STEP_ERRORS``), and ``trail.failure_of`` reads either. Sandbox-pure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.policies import LEDGER, ActivityPolicy

LOCAL_DB_STEPS = "local-db-steps"
DB_STEP_ERRORS = (ActivityError, ApplicationError)

A = TypeVar("A")
R = TypeVar("R")


async def db_step(activity: Callable[[A], Awaitable[R]], arg: A,
                  policy: ActivityPolicy = LEDGER, first: bool = False) -> R:
    """Run the database step ``activity(arg)``: locally, or as a regular activity in a flow
    whose history predates local database steps. ``first``: the step of a flow the API starts
    with update-with-start that runs in the workflow task accepting that update stays a
    regular activity. That task then holds no local activity, so a worker lost in it costs a
    short task timeout only (with one there, the crash sweep once left a refund's retried
    first task rejected for good: ``BadUpdateWorkflowExecutionMessage: ProtocolMessageCommand
    referenced absent message ID outcome/request/complete``, cf. temporalio/sdk-rust#888)."""
    if not first and workflow.patched(LOCAL_DB_STEPS):
        return await workflow.execute_local_activity(activity, arg, **policy)
    return await workflow.execute_activity(activity, arg, **policy)
