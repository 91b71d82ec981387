"""The outbox dispatcher: fans new outbox events out into one delivery per matching endpoint
and starts a WebhookDeliveryWorkflow for each (its id is the delivery id, so a start is never
duplicated). A client-side poller that runs beside the worker; safe with several workers
(SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from contracts.webhooks import DeliveryInput
from db.outbox import OutboxRepository
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
        workflow. Returns how many were started."""
        async with self.sessions.begin() as session:
            outbox = OutboxRepository(session)
            await outbox.fan_out()
            todo = await outbox.deliveries_to_start()
            for delivery_id, tenant_id in todo:
                await self.client.start_workflow(
                    WebhookDeliveryWorkflow.run, DeliveryInput(delivery_id, tenant_id),
                    id=delivery_id, task_queue=self.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
                await outbox.mark_started(delivery_id)
        return len(todo)
