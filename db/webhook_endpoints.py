"""Outbound webhooks: tenants' endpoints (with their ``whsec_`` secrets) and the deliveries
to them. Nothing here commits: the caller owns the transaction."""

from __future__ import annotations

import base64
import builtins
import secrets
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


def new_secret() -> str:
    """A fresh endpoint signing secret (Standard Webhooks' ``whsec_`` + base64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# A deleted endpoint stays (its deliveries' history refers to it) disabled for this reason; it
# is no longer listed, changed or enabled.
DELETED = "deleted"
_LIVE = f"AND disabled_reason IS DISTINCT FROM '{DELETED}' "


class WebhookEndpointRepository:
    """Tenants' outbound webhook endpoints and their deliveries (shared by the API and CLI)."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def create(self, tenant_id: str, endpoint_id: str, url: str, event_types: list[str],
                     secret: str) -> Any:
        return (await self.session.execute(text(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, secret) "
            "VALUES (:i, :t, :u, :e, :s) RETURNING *"),
            {"i": endpoint_id, "t": tenant_id, "u": url, "e": event_types, "s": secret})).one()

    async def list(self, tenant_id: str, after: tuple[Any, str] | None = None,
                   limit: int = 200) -> list[Any]:
        """The tenant's endpoints (not deleted), oldest first, after (created_at, id)."""
        return list((await self.session.execute(text(
            "SELECT * FROM webhook_endpoints WHERE tenant_id = :t " + _LIVE +
            "AND (CAST(:ac AS timestamptz) IS NULL OR (created_at, id) > "
            "(CAST(:ac AS timestamptz), CAST(:ai AS text))) ORDER BY created_at, id LIMIT :n"),
            {"t": tenant_id, "ac": after[0] if after else None,
             "ai": after[1] if after else None, "n": limit})).all())

    async def update(self, tenant_id: str, endpoint_id: str, url: str | None,
                     event_types: builtins.list[str] | None) -> Any | None:
        """A new URL and/or event types (None keeps the current one); None: no such endpoint."""
        return (await self.session.execute(text(
            "UPDATE webhook_endpoints SET url = coalesce(CAST(:u AS text), url), "
            "event_types = coalesce(CAST(:e AS text[]), event_types) "
            "WHERE id = :i AND tenant_id = :t " + _LIVE + "RETURNING *"),
            {"u": url, "e": event_types, "i": endpoint_id, "t": tenant_id})).first()

    async def set_enabled(self, tenant_id: str, endpoint_id: str, enabled: bool,
                          reason: str = "disabled by an admin") -> Any | None:
        """Disable (no new deliveries, pending ones stop) or enable again; None: no such
        endpoint. Disabling a disabled endpoint keeps its first reason."""
        return (await self.session.execute(text(
            "UPDATE webhook_endpoints SET "
            "disabled_at = CASE WHEN :on THEN NULL ELSE coalesce(disabled_at, now()) END, "
            "disabled_reason = CASE WHEN :on THEN NULL "
            "ELSE coalesce(disabled_reason, :r) END "
            "WHERE id = :i AND tenant_id = :t " + _LIVE + "RETURNING *"),
            {"on": enabled, "r": reason, "i": endpoint_id, "t": tenant_id})).first()

    async def delete(self, tenant_id: str, endpoint_id: str) -> bool:
        """Delete an endpoint: disabled for good (its deliveries' history stays) and no longer
        listed; False when there is no such endpoint."""
        return (await self.session.execute(text(
            "UPDATE webhook_endpoints SET disabled_at = coalesce(disabled_at, now()), "
            "disabled_reason = :d WHERE id = :i AND tenant_id = :t " + _LIVE + "RETURNING id"),
            {"d": DELETED, "i": endpoint_id, "t": tenant_id})).first() is not None

    async def rotate(self, tenant_id: str, endpoint_id: str, secret: str) -> Any | None:
        """The new secret signs from now on; the old one keeps signing beside it for 24 h."""
        return (await self.session.execute(text(
            "UPDATE webhook_endpoints SET previous_secret = secret, secret = :s, "
            "previous_valid_until = now() + interval '24 hours' WHERE id = :i AND tenant_id = :t "
            + _LIVE + "RETURNING *"), {"s": secret, "i": endpoint_id, "t": tenant_id})).first()

    async def deliveries(self, tenant_id: str, endpoint_id: str | None = None,
                         status: str | None = None, limit: int = 200,
                         before: tuple[Any, str] | None = None) -> builtins.list[Any]:
        """Deliveries, newest first, before the (created_at, id) position."""
        return list((await self.session.execute(text(
            "SELECT d.*, o.type, coalesce((SELECT json_agg(json_build_object('at', a.at, "
            "'status_code', a.status_code, 'error', a.error) ORDER BY a.id) "
            "FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]') AS attempt_log "
            "FROM webhook_deliveries d JOIN outbox_events o ON o.id = d.event_id "
            "WHERE d.tenant_id = :t AND (CAST(:e AS text) IS NULL OR d.endpoint_id = :e) "
            "AND (CAST(:s AS text) IS NULL OR d.status = :s) "
            "AND (CAST(:bc AS timestamptz) IS NULL OR (d.created_at, d.id) < "
            "(CAST(:bc AS timestamptz), CAST(:bi AS text))) "
            "ORDER BY d.created_at DESC, d.id DESC LIMIT :n"),
            {"t": tenant_id, "e": endpoint_id, "s": status, "n": limit,
             "bc": before[0] if before else None, "bi": before[1] if before else None})).all())

    async def reopen(self, tenant_id: str, delivery_id: str) -> bool:
        """Mark a delivery pending again before it is re-sent (same webhook-id)."""
        return (await self.session.execute(text(
            "UPDATE webhook_deliveries SET status = 'pending' WHERE id = :d AND tenant_id = :t "
            "RETURNING id"), {"d": delivery_id, "t": tenant_id})).first() is not None


class DeliveryRepository:
    """One delivery's life as the worker sends it: its event and endpoint, each attempt, the
    outcome."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def load(self, delivery_id: str) -> dict[str, Any]:
        """The delivery with its endpoint (url, secrets, disabled?), event (type, payload) and
        whether its tenant is in development mode (local destinations allowed)."""
        row = (await self.session.execute(text(
            "SELECT d.id, d.status, e.url, e.secret, e.previous_secret, "
            "e.previous_valid_until > now() AS previous_valid, e.disabled_at, "
            "o.type, o.payload, o.created_at, "
            "coalesce(t.settings -> 'development' = 'true'::jsonb, false) AS development "
            "FROM webhook_deliveries d "
            "JOIN webhook_endpoints e ON e.id = d.endpoint_id "
            "JOIN tenants t ON t.id = d.tenant_id "
            "JOIN outbox_events o ON o.id = d.event_id WHERE d.id = :d"),
            {"d": delivery_id})).one()
        return dict(row._mapping)

    async def record_attempt(self, delivery_id: str, status: int | None, error: str | None,
                             duration_ms: int) -> None:
        await self.session.execute(text(
            "INSERT INTO webhook_attempts (delivery_id, status_code, error, duration_ms) "
            "VALUES (:d, :s, :e, :ms)"),
            {"d": delivery_id, "s": status, "e": error, "ms": duration_ms})
        await self.session.execute(text(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = :s, "
            "last_error = :e WHERE id = :d"), {"d": delivery_id, "s": status, "e": error})

    async def finish(self, delivery_id: str, status: str, error: str | None) -> None:
        await self.session.execute(text(
            "UPDATE webhook_deliveries SET status = :st, delivered_at = CASE WHEN "
            ":st = 'delivered' THEN now() END, last_error = coalesce(:e, last_error) "
            "WHERE id = :d"), {"d": delivery_id, "st": status, "e": error})

    async def give_up(self, delivery_id: str, reason: str) -> None:
        """A pending delivery whose retries ran out is failed."""
        await self.session.execute(text(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = :e "
            "WHERE id = :d AND status = 'pending'"), {"d": delivery_id, "e": reason})

    async def disable_endpoint(self, delivery_id: str, reason: str) -> None:
        """Disable the delivery's endpoint (it answered 410 Gone)."""
        await self.session.execute(text(
            "UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = :r "
            "WHERE id = (SELECT endpoint_id FROM webhook_deliveries WHERE id = :d)"),
            {"d": delivery_id, "r": reason})
