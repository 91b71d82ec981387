"""The outbox dispatcher: fans new outbox events out into one delivery per matching endpoint
and starts a WebhookDeliveryWorkflow for each (its id is the delivery id, so a start is never
duplicated). Each delivery is started and marked in its own transaction, and a delivery whose
workflow already exists counts as started, so one bad row never stalls the rows behind it. A
client-side poller that runs beside the worker; safe with several workers (SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from contracts.webhooks import DeliveryInput
from db.outbox import OutboxRepository
from workflows.console import start_options
from workflows.webhook_delivery import WebhookDeliveryWorkflow

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, client: Client, sessions: async_sessionmaker[AsyncSession],
                 task_queue: str, interval: float = 0.5):
        self.client, self.sessions = client, sessions
        self.task_queue, self.interval = task_queue, interval

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - keep dispatching after a transient fault
                log.exception("webhook dispatch failed; retrying")
            await asyncio.sleep(self.interval)

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
            except Exception:  # noqa: BLE001 - one delivery's fault never stalls the others
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
