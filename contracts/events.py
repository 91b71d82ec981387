"""Business events recorded in the outbox, in the same transaction as the money they announce."""

from __future__ import annotations

from dataclasses import dataclass

EMIT_EVENT = "events.emit"


@dataclass
class EventOut:
    """A business event for the tenant's webhook endpoints (recorded once per key)."""

    tenant_id: str
    key: str
    type: str
    payload: dict[str, str]
