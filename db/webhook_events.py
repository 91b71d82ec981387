"""Incoming gateway/store webhook events, stored once per event id. Nothing here commits: the
caller owns the transaction."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


def storable(value: Any) -> Any:
    """``value`` as PostgreSQL's jsonb takes it: it refuses NUL characters and unpaired
    surrogates in strings (each becomes U+FFFD or "?"), and exact decimals are kept as their
    text (never floats)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def _payload(payload: dict[str, Any]) -> str:
    try:
        return json.dumps(storable(payload))
    except RecursionError:
        return json.dumps({"unstorable": "nested too deeply"})


class WebhookEventRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def record(self, source: str, event_id: str, event_type: str, flow_id: str | None,
                     payload: dict[str, Any]) -> bool:
        """Store the event once. Returns True when it still has to be acted on (first delivery,
        or an earlier delivery that failed before it was decided)."""
        inserted = (await self.session.execute(
            text("INSERT INTO webhook_events (source, event_id, event_type, flow_id, payload) "
                 "VALUES (:s, :e, :t, :f, CAST(:p AS jsonb)) ON CONFLICT DO NOTHING "
                 "RETURNING event_id"),
            {"s": source, "e": storable(event_id), "t": storable(event_type),
             "f": storable(flow_id), "p": _payload(payload)},
        )).first()
        if inserted:
            return True
        row = (await self.session.execute(
            text("UPDATE webhook_events SET deliveries = deliveries + 1 "
                 "WHERE source = :s AND event_id = :e RETURNING signalled_at, outcome"),
            {"s": source, "e": storable(event_id)},
        )).one()
        return row.signalled_at is None and row.outcome is None

    async def mark(self, source: str, event_id: str, outcome: str, signalled: bool,
                   detail: str | None = None) -> None:
        """The outcome (``signalled``, ``ignored_mismatch``, ``malformed`` …) and, for one that
        was not acted on, why."""
        await self.session.execute(
            text("UPDATE webhook_events SET outcome = :o, detail = :d, "
                 "signalled_at = CASE WHEN :sig THEN now() ELSE signalled_at END "
                 "WHERE source = :s AND event_id = :e"),
            {"s": source, "e": storable(event_id), "o": outcome, "sig": signalled,
             "d": storable(detail)},
        )

    async def get(self, source: str, event_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(
            text("SELECT * FROM webhook_events WHERE source = :s AND event_id = :e"),
            {"s": source, "e": event_id},
        )).first()
        return dict(row._mapping) if row else None
