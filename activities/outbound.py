"""Outbound webhooks (Standard Webhooks): fan the outbox out into deliveries, deliver each one
signed (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`), with both secrets during a rotation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError

from contracts.events import EMIT_EVENT, EventOut
from contracts.webhooks import DELIVER_WEBHOOK, GIVE_UP_WEBHOOK, DeliveryInput

log = logging.getLogger(__name__)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class WebhookActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 http: httpx.AsyncClient | None = None):
        self.sessions = sessions
        self.http = http or httpx.AsyncClient(timeout=15, follow_redirects=False)

    async def _load(self, delivery_id: str) -> dict[str, Any]:
        async with self.sessions() as session:
            row = (await session.execute(text(
                "SELECT d.id, d.status, e.url, e.secret, e.previous_secret, "
                "e.previous_valid_until > now() AS previous_valid, e.disabled_at, "
                "o.type, o.payload, o.created_at FROM webhook_deliveries d "
                "JOIN webhook_endpoints e ON e.id = d.endpoint_id "
                "JOIN outbox_events o ON o.id = d.event_id WHERE d.id = :d"),
                {"d": delivery_id})).one()
        return dict(row._mapping)

    @activity.defn(name=DELIVER_WEBHOOK)
    async def deliver(self, inp: DeliveryInput) -> str:
        d = await self._load(inp.delivery_id)
        if d["disabled_at"] is not None:
            await self._finish(inp.delivery_id, "disabled", None, "the endpoint is disabled")
            raise ApplicationError("endpoint disabled", type="endpoint_disabled",
                                   non_retryable=True)
        body = json.dumps({"type": d["type"], "timestamp": d["created_at"].isoformat(),
                           "data": d["payload"]}, separators=(",", ":"))
        ts = int(time.time())
        signatures = [sign(d["secret"], inp.delivery_id, ts, body)]
        if d["previous_secret"] and d["previous_valid"]:
            signatures.append(sign(d["previous_secret"], inp.delivery_id, ts, body))
        headers = {"webhook-id": inp.delivery_id, "webhook-timestamp": str(ts),
                   "webhook-signature": " ".join(signatures),
                   "content-type": "application/json", "user-agent": "walletflow-webhooks/1"}
        started = time.monotonic()
        status, error = None, None
        try:
            response = await self.http.post(d["url"], content=body, headers=headers)
            status = response.status_code
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:300]
        await self._attempt(inp.delivery_id, status, error, started)
        activity.metric_meter().create_counter(
            "walletflow_webhook_deliveries", "Outbound webhook delivery attempts").add(
            1, {"result": "delivered" if status is not None and 200 <= status < 300 else
                "gone" if status == 410 else "error" if status is None else f"http_{status}"})
        if status is not None and 200 <= status < 300:
            await self._finish(inp.delivery_id, "delivered", status, None)
            return "delivered"
        if status == 410:
            async with self.sessions.begin() as session:
                await session.execute(text(
                    "UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = "
                    "'410 Gone' WHERE id = (SELECT endpoint_id FROM webhook_deliveries "
                    "WHERE id = :d)"), {"d": inp.delivery_id})
            await self._finish(inp.delivery_id, "disabled", status, "410 Gone")
            raise ApplicationError("the endpoint answered 410 Gone", type="endpoint_gone",
                                   non_retryable=True)
        raise ApplicationError(f"endpoint answered {status or error}", type="delivery_failed")

    @activity.defn(name=EMIT_EVENT)
    async def emit(self, event: EventOut) -> None:
        from activities.campaigns import emit

        async with self.sessions.begin() as session:
            await emit(session, event.tenant_id, event.key, event.type, dict(event.payload))

    @activity.defn(name=GIVE_UP_WEBHOOK)
    async def give_up(self, inp: DeliveryInput, reason: str) -> None:
        async with self.sessions.begin() as session:
            await session.execute(text(
                "UPDATE webhook_deliveries SET status = 'failed', last_error = :e "
                "WHERE id = :d AND status = 'pending'"), {"d": inp.delivery_id, "e": reason})

    async def _attempt(self, delivery_id: str, status: int | None, error: str | None,
                       started: float) -> None:
        async with self.sessions.begin() as session:
            await session.execute(text(
                "INSERT INTO webhook_attempts (delivery_id, status_code, error, duration_ms) "
                "VALUES (:d, :s, :e, :ms)"),
                {"d": delivery_id, "s": status, "e": error,
                 "ms": int((time.monotonic() - started) * 1000)})
            await session.execute(text(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = :s, "
                "last_error = :e WHERE id = :d"), {"d": delivery_id, "s": status, "e": error})

    async def _finish(self, delivery_id: str, status: str, code: int | None,
                      error: str | None) -> None:
        async with self.sessions.begin() as session:
            await session.execute(text(
                "UPDATE webhook_deliveries SET status = :st, delivered_at = CASE WHEN "
                ":st = 'delivered' THEN now() END, last_error = coalesce(:e, last_error) "
                "WHERE id = :d"), {"d": delivery_id, "st": status, "e": error})

    async def close(self) -> None:
        await self.http.aclose()


class Dispatcher:
    """Fans new outbox events out into one delivery per matching endpoint and starts a
    WebhookDeliveryWorkflow for each (its id is the delivery id, so a start is never
    duplicated). Runs beside the worker; safe with several workers (SKIP LOCKED)."""

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
        from workflows.webhook_delivery import WebhookDeliveryWorkflow

        async with self.sessions.begin() as session:
            # One statement for the whole batch: a delivery per (event, matching endpoint).
            await session.execute(text(
                "WITH batch AS (SELECT id, tenant_id, type FROM outbox_events "
                "WHERE dispatched_at IS NULL ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED), "
                "ins AS (INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id) "
                "SELECT 'msg_' || md5(w.id || ':' || b.id::text), b.tenant_id, w.id, b.id "
                "FROM batch b JOIN webhook_endpoints w ON w.tenant_id = b.tenant_id "
                "AND w.disabled_at IS NULL "
                "AND (cardinality(w.event_types) = 0 OR b.type = ANY(w.event_types)) "
                "ON CONFLICT DO NOTHING) "
                "UPDATE outbox_events o SET dispatched_at = now() FROM batch b WHERE o.id = b.id"))
            todo = (await session.execute(text(
                "SELECT id, tenant_id FROM webhook_deliveries WHERE started_at IS NULL "
                "ORDER BY created_at LIMIT 500 FOR UPDATE SKIP LOCKED"))).all()
            for d in todo:
                await self.client.start_workflow(
                    WebhookDeliveryWorkflow.run, DeliveryInput(d.id, str(d.tenant_id)), id=d.id,
                    task_queue=self.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
                await session.execute(text(
                    "UPDATE webhook_deliveries SET started_at = now() WHERE id = :d"),
                    {"d": d.id})
        return len(todo)
