"""The outbox dispatcher: fans new outbox events out into one delivery per matching endpoint
and starts a WebhookDeliveryWorkflow for each (its id is the delivery id, so a start is never
duplicated). Each delivery is started and marked in its own transaction, and a delivery whose
workflow already exists counts as started, so one bad row never stalls the rows behind it. A
client-side poller that runs beside the worker; safe with several workers (SKIP LOCKED).

While PostgreSQL or Temporal is unavailable it logs one warning when the outage starts (the
error, no traceback), backs off (doubling up to ``max_backoff``) and logs one line when it is
over, with how long it lasted; any other error is logged with its traceback."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
from sqlalchemy import exc as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.webhooks import DeliveryInput
from db.outbox import OutboxRepository
from workflows.console import start_options
from workflows.webhook_delivery import WebhookDeliveryWorkflow

log = logging.getLogger(__name__)

# The connection, not the statement, failed: PostgreSQL unreachable, restarting or shutting down
# (as api/errors.py's ``outage`` judges it), or Temporal not answering.
_DB_DOWN = (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError, sa.TimeoutError,
            asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
            asyncpg.exceptions.OperatorInterventionError, OSError)
_TEMPORAL_DOWN = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED,
                  RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.CANCELLED}


def unavailable(exc: BaseException) -> str | None:
    """The dependency an exception says is unavailable ("PostgreSQL", "Temporal"), or None:
    bad SQL, a constraint or a bug is not an outage."""
    pending: list[BaseException | None] = [exc]
    seen: list[BaseException] = []
    while pending:
        e = pending.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        if isinstance(e, RPCError):
            return "Temporal" if e.status in _TEMPORAL_DOWN else None
        if (isinstance(e, sa.DBAPIError) and e.connection_invalidated) or isinstance(e, _DB_DOWN):
            return "PostgreSQL"
        pending += [getattr(e, "orig", None), e.__cause__]
    return None


def _said(e: BaseException) -> str:
    """The error's class and the first line of its message (a log line, not a traceback)."""
    message = (str(e).strip().splitlines() or [""])[0][:300]
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


class Dispatcher:
    def __init__(self, client: Client, sessions: async_sessionmaker[AsyncSession],
                 task_queue: str, interval: float = 0.5, max_backoff: float = 5.0):
        self.client, self.sessions = client, sessions
        self.task_queue, self.interval = task_queue, interval
        self.max_backoff = max(max_backoff, interval)
        self.outage_since: float | None = None  # time.monotonic() when the outage began
        self.failed_rounds = 0  # rounds failed in the current outage

    async def run(self) -> None:
        while True:
            pause = await self.round()
            await asyncio.sleep(pause)

    async def round(self) -> float:
        """One round of ``run``; returns how long to wait before the next one."""
        try:
            await self.tick()
        except Exception as e:  # noqa: BLE001 - keep dispatching after a fault
            down = unavailable(e)
            if down is None:
                log.exception("webhook dispatch failed; retrying")
                return self.interval
            return self._failed(down, e)
        if self.outage_since is not None:
            log.info("webhook dispatch resumed: the outage lasted %.1f s (%d failed rounds)",
                     time.monotonic() - self.outage_since, self.failed_rounds)
            self.outage_since, self.failed_rounds = None, 0
        return self.interval

    def _failed(self, down: str, e: Exception) -> float:
        """A round failed because a dependency is unavailable: warn once per outage, and back
        off (the interval, doubled per failed round, up to ``max_backoff``)."""
        if self.outage_since is None:
            self.outage_since = time.monotonic()
            log.warning("webhook dispatch paused: %s unavailable (%s); retrying with backoff "
                        "up to %g s", down, _said(e), self.max_backoff)
        self.failed_rounds += 1
        return min(self.interval * 2 ** min(self.failed_rounds, 30), self.max_backoff)

    async def tick(self) -> int:
        """One round: new events become deliveries; deliveries not started get their
        workflow, each in its own transaction (a failure leaves the others started and marked).
        Returns how many were started."""
        async with self.sessions.begin() as session:
            await OutboxRepository(session).fan_out()
        async with self.sessions() as session:
            todo = await OutboxRepository(session).deliveries_to_start(lock=False)
        started = 0
        for delivery_id, tenant_id in todo:
            try:
                started += await self.start(delivery_id, tenant_id)
            except Exception as e:  # noqa: BLE001 - one delivery's fault never stalls the others
                if unavailable(e):
                    raise  # an outage stalls them all: the round fails, ``run`` backs off
                log.exception("could not start delivery %s; retrying next round", delivery_id)
        return started

    async def start(self, delivery_id: str, tenant_id: str) -> int:
        """Start one delivery's workflow and mark it started, in one transaction that holds its
        row (another dispatcher skips it). A workflow that already exists — started by a round
        whose transaction then failed, possibly finished since — counts as started. 1 when
        this call started or marked it, 0 when another dispatcher holds it or marked it."""
        async with self.sessions.begin() as session:
            outbox = OutboxRepository(session)
            if not await outbox.claim_unstarted(delivery_id):
                return 0
            try:
                inp = DeliveryInput(delivery_id, tenant_id)
                await self.client.start_workflow(
                    WebhookDeliveryWorkflow.run, inp, id=delivery_id, task_queue=self.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                    **start_options("webhook_delivery", None, inp, via="the dispatcher"))
            except WorkflowAlreadyStartedError:
                log.info("delivery %s was already started (its workflow exists)", delivery_id)
            await outbox.mark_started(delivery_id)
        return 1
