"""The outbox: business events recorded in the same transaction as the change they describe,
then fanned out into one webhook delivery per matching endpoint (see dispatcher.py). Nothing
here commits: the caller owns the transaction."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# One statement for a whole batch: a delivery per (new event, matching enabled endpoint); the
# events are marked dispatched. SKIP LOCKED lets several dispatchers share the outbox.
_FAN_OUT = text(
    "WITH batch AS (SELECT id, tenant_id, type FROM outbox_events "
    "WHERE dispatched_at IS NULL ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED), "
    "ins AS (INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id) "
    "SELECT 'msg_' || md5(w.id || ':' || b.id::text), b.tenant_id, w.id, b.id "
    "FROM batch b JOIN webhook_endpoints w ON w.tenant_id = b.tenant_id "
    "AND w.disabled_at IS NULL "
    "AND (cardinality(w.event_types) = 0 OR b.type = ANY(w.event_types)) "
    "ON CONFLICT DO NOTHING) "
    "UPDATE outbox_events o SET dispatched_at = now() FROM batch b WHERE o.id = b.id")

# Deliveries ready to start, oldest event first. One whose event names a flow (payload
# ``flow_id``) waits while an earlier event of the same flow is still undelivered to the same
# endpoint (not started, or started within the day a delivery may retry), so the flow's
# events arrive in the order they were recorded (cashback.pending before .available).
_READY = text(
    "WITH open AS (SELECT d.id, d.endpoint_id, d.event_id, d.started_at, "
    "o.payload->>'flow_id' AS flow FROM webhook_deliveries d "
    "JOIN outbox_events o ON o.id = d.event_id WHERE d.status = 'pending'), "
    "ready AS (SELECT x.id, x.event_id FROM open x WHERE x.started_at IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM open y WHERE y.endpoint_id = x.endpoint_id "
    "AND y.flow = x.flow AND y.event_id < x.event_id "
    "AND (y.started_at IS NULL OR y.started_at > now() - interval '25 hours')) "
    "ORDER BY x.event_id, x.id LIMIT :n) "
    "SELECT d.id, d.tenant_id FROM webhook_deliveries d JOIN ready r ON r.id = d.id "
    "ORDER BY r.event_id, d.id")


async def emit(session: AsyncSession, tenant_id: str, key: str, type_: str,
               payload: dict[str, Any]) -> None:
    """Record a business event in the outbox, once per key, in the caller's transaction."""
    await session.execute(text(
        "INSERT INTO outbox_events (tenant_id, event_key, type, payload) "
        "VALUES (:t, :k, :ty, CAST(:p AS jsonb)) ON CONFLICT DO NOTHING"),
        {"t": tenant_id, "k": key, "ty": type_, "p": json.dumps(payload)})


class OutboxRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def emit(self, tenant_id: str, key: str, type_: str, payload: dict[str, Any]) -> None:
        await emit(self.session, tenant_id, key, type_, payload)

    async def fan_out(self, limit: int = 1000) -> None:
        """Turn up to ``limit`` new events into deliveries (one per matching endpoint)."""
        await self.session.execute(_FAN_OUT, {"n": limit})

    async def deliveries_to_start(self, limit: int = 500, lock: bool = True
                                  ) -> list[tuple[str, str]]:
        """(delivery id, tenant id) of deliveries whose workflow has not been started, in the
        order their events were recorded; locked until the caller's transaction ends unless
        ``lock`` is False (the caller then claims each with ``claim_unstarted``). Events of one
        flow reach an endpoint in that order (``_READY``)."""
        sql = _READY.text + (" FOR UPDATE OF d SKIP LOCKED" if lock else "")
        rows = await self.session.execute(text(sql), {"n": limit})
        return [(r.id, str(r.tenant_id)) for r in rows]

    async def claim_unstarted(self, delivery_id: str) -> bool:
        """Lock one delivery still waiting for its start (skipped when another dispatcher holds
        it): True when the caller holds it now, until its transaction ends."""
        row = (await self.session.execute(text(
            "SELECT id FROM webhook_deliveries WHERE id = :d AND status = 'pending' "
            "AND started_at IS NULL FOR UPDATE SKIP LOCKED"), {"d": delivery_id})).first()
        return row is not None

    async def mark_started(self, delivery_id: str) -> None:
        await self.session.execute(text(
            "UPDATE webhook_deliveries SET started_at = now() WHERE id = :d"), {"d": delivery_id})
