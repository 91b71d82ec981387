"""Temporal Schedules the service keeps: the janitor (``workflows/janitor.py``), every
``JANITOR_INTERVAL_SECONDS`` (0: none). Ensured at the worker's start, idempotently: created
once, its interval updated when the setting changed; runs never overlap."""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from contracts.reconcile import JANITOR_SCHEDULE_ID, JANITOR_WORKFLOW, JanitorInput
from workflows.console import search_attributes

log = logging.getLogger(__name__)
JANITOR_SUMMARY = "janitor: reconcile with the gateway, nudge stuck flows, remove orphan rows"


def janitor_schedule(task_queue: str, interval_seconds: float) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            JANITOR_WORKFLOW, JanitorInput(), id=JANITOR_SCHEDULE_ID, task_queue=task_queue,
            execution_timeout=timedelta(seconds=max(interval_seconds, 300)),
            typed_search_attributes=search_attributes("janitor", None, None, None),
            static_summary=JANITOR_SUMMARY),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(
            every=timedelta(seconds=interval_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP))


async def ensure_janitor_schedule(client: Client, task_queue: str,
                                  interval_seconds: float) -> None:
    """Create the janitor's schedule, or bring an existing one to this interval and queue."""
    if interval_seconds <= 0:
        return
    schedule = janitor_schedule(task_queue, interval_seconds)
    try:
        await client.create_schedule(JANITOR_SCHEDULE_ID, schedule)
        log.info("janitor scheduled every %ss", interval_seconds)
    except ScheduleAlreadyRunningError:
        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(JANITOR_SCHEDULE_ID).update(update)
