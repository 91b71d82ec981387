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

    async def deliveries_to_start(self, limit: int = 500) -> list[tuple[str, str]]:
        """(delivery id, tenant id) of deliveries whose workflow has not been started, locked
        until the caller's transaction ends."""
        rows = await self.session.execute(text(
            "SELECT id, tenant_id FROM webhook_deliveries WHERE started_at IS NULL "
            "ORDER BY created_at LIMIT :n FOR UPDATE SKIP LOCKED"), {"n": limit})
        return [(r.id, str(r.tenant_id)) for r in rows]

    async def mark_started(self, delivery_id: str) -> None:
        await self.session.execute(text(
            "UPDATE webhook_deliveries SET started_at = now() WHERE id = :d"), {"d": delivery_id})
