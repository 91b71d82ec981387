"""Incoming gateway/store webhook events, stored once per event id. Nothing here commits: the
caller owns the transaction."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class WebhookEventRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def record(self, source: str, event_id: str, event_type: str, flow_id: str | None,
                     payload: dict[str, Any]) -> bool:
        """Store the event once. Returns True when it still has to be signalled (first delivery,
        or an earlier delivery that failed before signalling)."""
        inserted = (await self.session.execute(
            text("INSERT INTO webhook_events (source, event_id, event_type, flow_id, payload) "
                 "VALUES (:s, :e, :t, :f, CAST(:p AS jsonb)) ON CONFLICT DO NOTHING "
                 "RETURNING event_id"),
            {"s": source, "e": event_id, "t": event_type, "f": flow_id,
             "p": json.dumps(payload)},
        )).first()
        if inserted:
            return True
        row = (await self.session.execute(
            text("UPDATE webhook_events SET deliveries = deliveries + 1 "
                 "WHERE source = :s AND event_id = :e RETURNING signalled_at, outcome"),
            {"s": source, "e": event_id},
        )).one()
        return row.signalled_at is None and row.outcome is None

    async def mark(self, source: str, event_id: str, outcome: str, signalled: bool) -> None:
        await self.session.execute(
            text("UPDATE webhook_events SET outcome = :o, "
                 "signalled_at = CASE WHEN :sig THEN now() ELSE signalled_at END "
                 "WHERE source = :s AND event_id = :e"),
            {"s": source, "e": event_id, "o": outcome, "sig": signalled},
        )

    async def get(self, source: str, event_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(
            text("SELECT * FROM webhook_events WHERE source = :s AND event_id = :e"),
            {"s": source, "e": event_id},
        )).first()
        return dict(row._mapping) if row else None
