"""Non-ledger data access: tenants, API keys, users, flows (idempotency keys), webhook events.
Like the ledger repository, nothing here commits: the caller owns the transaction."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass
class Principal:
    """Who is calling: the tenant and the scopes of the API key used."""

    tenant_id: str
    tenant_slug: str
    key_id: str
    scopes: frozenset[str]
    actor: str
    settings: dict[str, Any]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """A fresh key: (key id, full key). Only the hash of the full key is stored."""
    key_id = "wfk_" + secrets.token_hex(6)
    return key_id, f"{key_id}_{secrets.token_urlsafe(24)}"


class TenantRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def create_tenant(self, slug: str, name: str, settings: dict[str, Any] | None = None
                            ) -> str:
        row = await self.session.execute(
            text("INSERT INTO tenants (slug, name, settings) VALUES (:s, :n, CAST(:st AS jsonb)) "
                 "RETURNING id"),
            {"s": slug, "n": name, "st": json.dumps(settings or {})},
        )
        return str(row.scalar_one())

    async def tenant_by_slug(self, slug: str) -> dict[str, Any] | None:
        row = (await self.session.execute(
            text("SELECT id, slug, name, settings FROM tenants WHERE slug = :s"), {"s": slug}
        )).first()
        return dict(row._mapping) | {"id": str(row.id)} if row else None

    async def create_key(self, tenant_id: str, scopes: list[str], actor: str) -> str:
        key_id, key = new_api_key()
        await self.session.execute(
            text("INSERT INTO api_keys (id, tenant_id, key_hash, scopes, actor) "
                 "VALUES (:id, :t, :h, :sc, :a)"),
            {"id": key_id, "t": tenant_id, "h": hash_key(key), "sc": scopes, "a": actor},
        )
        return key

    async def admins(self, tenant_id: str) -> list[str]:
        """Holders of the tenant's active admin keys (who may approve)."""
        return list((await self.session.execute(text(
            "SELECT DISTINCT actor FROM api_keys WHERE tenant_id = :t AND 'admin' = ANY(scopes) "
            "AND revoked_at IS NULL"), {"t": tenant_id})).scalars())

    async def authenticate(self, key: str) -> Principal | None:
        parts = key.split("_", 2)  # wfk_<id>_<secret>; the secret may contain "_"
        key_id = f"{parts[0]}_{parts[1]}" if len(parts) == 3 else ""
        row = (await self.session.execute(
            text("SELECT k.id, k.key_hash, k.scopes, k.actor, t.id AS tenant_id, t.slug, "
                 "t.settings FROM api_keys k JOIN tenants t ON t.id = k.tenant_id "
                 "WHERE k.id = :id AND k.revoked_at IS NULL"),
            {"id": key_id},
        )).first()
        # Hash even when the key id is unknown, and compare in constant time.
        presented = hash_key(key)
        if row is None or not secrets.compare_digest(presented, row.key_hash):
            return None
        return Principal(str(row.tenant_id), row.slug, row.id, frozenset(row.scopes), row.actor,
                         row.settings or {})


class UserRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def create(self, tenant_id: str, user_id: str, email: str | None) -> bool:
        """Create the user; False when it already exists."""
        row = await self.session.execute(
            text("INSERT INTO users (tenant_id, user_id, email) VALUES (:t, :u, :e) "
                 "ON CONFLICT DO NOTHING RETURNING user_id"),
            {"t": tenant_id, "u": user_id, "e": email},
        )
        return row.first() is not None

    async def get(self, tenant_id: str, user_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(
            text("SELECT user_id, email, created_at FROM users WHERE tenant_id = :t "
                 "AND user_id = :u"),
            {"t": tenant_id, "u": user_id},
        )).first()
        return dict(row._mapping) if row else None


class FlowRepository:
    """The tenant-scoped Idempotency-Key store: one row per flow-starting request."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def claim(self, tenant_id: str, key: str, flow_id: str, kind: str, user_id: str | None,
                    request_hash: str) -> dict[str, Any] | None:
        """Record the key (first request wins) and return the stored row; None when the flow id
        already belongs to another key (e.g. an order paid under another key)."""
        await self.session.execute(
            text("INSERT INTO flows (tenant_id, idempotency_key, flow_id, kind, user_id, "
                 "request_hash) VALUES (:t, :k, :f, :kind, :u, :h) ON CONFLICT DO NOTHING"),
            {"t": tenant_id, "k": key, "f": flow_id, "kind": kind, "u": user_id, "h": request_hash},
        )
        row = (await self.session.execute(
            text("SELECT flow_id, kind, request_hash, response, status_code FROM flows "
                 "WHERE tenant_id = :t AND idempotency_key = :k"),
            {"t": tenant_id, "k": key},
        )).first()
        return dict(row._mapping) if row else None

    async def store_response(self, tenant_id: str, key: str, status_code: int,
                             response: dict[str, Any]) -> None:
        await self.session.execute(
            text("UPDATE flows SET response = CAST(:r AS jsonb), status_code = :s "
                 "WHERE tenant_id = :t AND idempotency_key = :k AND response IS NULL"),
            {"t": tenant_id, "k": key, "s": status_code, "r": json.dumps(response)},
        )

    async def get(self, tenant_id: str, flow_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(
            text("SELECT flow_id, kind, user_id, idempotency_key, response, created_at "
                 "FROM flows WHERE tenant_id = :t AND flow_id = :f"),
            {"t": tenant_id, "f": flow_id},
        )).first()
        return dict(row._mapping) if row else None

    async def list(self, tenant_id: str, kind: str | None, before: tuple[str, str] | None,
                   limit: int) -> list[dict[str, Any]]:
        rows = await self.session.execute(
            text("SELECT flow_id, kind, user_id, idempotency_key, created_at FROM flows "
                 "WHERE tenant_id = :t AND (CAST(:kind AS text) IS NULL OR kind = :kind) "
                 "AND (CAST(:bc AS timestamptz) IS NULL OR (created_at, flow_id) < "
                 "(CAST(:bc AS timestamptz), :bf)) ORDER BY created_at DESC, flow_id DESC "
                 "LIMIT :lim"),
            {"t": tenant_id, "kind": kind, "bc": before[0] if before else None,
             "bf": before[1] if before else None, "lim": limit},
        )
        return [dict(r._mapping) for r in rows]


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


class StoreRepository:
    """Store credentials (widget keys, Shopify/WooCommerce secrets), purchases, interactions."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def add_credential(self, tenant_id: str, platform: str, public_key: str,
                             secret: str | None = None) -> str:
        secret = secret or secrets.token_urlsafe(32)
        await self.session.execute(
            text("INSERT INTO store_credentials (tenant_id, platform, public_key, secret) "
                 "VALUES (:t, :p, :k, :s) ON CONFLICT (tenant_id, platform, public_key) "
                 "DO UPDATE SET secret = EXCLUDED.secret"),
            {"t": tenant_id, "p": platform, "k": public_key, "s": secret},
        )
        return secret

    async def credentials(self, platform: str, public_key: str | None) -> list[dict[str, Any]]:
        """Candidate (tenant, secret) pairs: by public key when given, else all of the platform.
        The caller picks the one whose signature verifies."""
        rows = await self.session.execute(
            text("SELECT c.tenant_id, c.public_key, c.secret, t.slug FROM store_credentials c "
                 "JOIN tenants t ON t.id = c.tenant_id WHERE c.platform = :p AND "
                 "(CAST(:k AS text) IS NULL OR c.public_key = :k) LIMIT 1000"),
            {"p": platform, "k": public_key},
        )
        return [dict(r._mapping) | {"tenant_id": str(r.tenant_id)} for r in rows]

    async def first_use_of_signature(self, signature: str) -> bool:
        """Record a widget signature; False when it was seen before (a replay)."""
        row = await self.session.execute(
            text("INSERT INTO widget_replay_guard (signature) VALUES (:s) "
                 "ON CONFLICT DO NOTHING RETURNING signature"), {"s": signature})
        if secrets.randbelow(100) == 0:  # prune what the timestamp tolerance already refuses
            await self.session.execute(text(
                "DELETE FROM widget_replay_guard WHERE seen_at < now() - interval '1 hour'"))
        return row.first() is not None

    async def record_interaction(self, tenant_id: str, user_id: str | None, email: str | None,
                                 session_id: str | None, kind: str, occurred_at: Any) -> int:
        row = await self.session.execute(
            text("INSERT INTO widget_interactions (tenant_id, user_id, email, session_id, kind, "
                 "occurred_at) VALUES (:t, :u, :e, :s, :k, :at) RETURNING id"),
            {"t": tenant_id, "u": user_id, "e": email, "s": session_id, "k": kind,
             "at": occurred_at},
        )
        return int(row.scalar_one())

    async def record_purchase(self, tenant_id: str, order_id: str, flow_id: str, user_id: str,
                              email: str | None, amount: int, currency: str, platform: str,
                              shop: str | None, occurred_at: Any) -> tuple[bool, dict[str, Any]]:
        """Insert the purchase once per (tenant, store order id); returns (new, row)."""
        inserted = (await self.session.execute(
            text("INSERT INTO purchases (tenant_id, store_order_id, flow_id, user_id, email, "
                 "amount, currency, platform, shop, occurred_at) VALUES (:t, :o, :f, :u, :e, :a, "
                 ":c, :p, :s, :at) ON CONFLICT DO NOTHING RETURNING store_order_id"),
            {"t": tenant_id, "o": order_id, "f": flow_id, "u": user_id, "e": email, "a": amount,
             "c": currency, "p": platform, "s": shop, "at": occurred_at},
        )).first()
        return inserted is not None, await self.purchase(tenant_id, order_id) or {}

    async def purchase(self, tenant_id: str, order_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(
            text("SELECT * FROM purchases WHERE tenant_id = :t AND store_order_id = :o"),
            {"t": tenant_id, "o": order_id},
        )).first()
        return dict(row._mapping) if row else None


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

    async def list(self, tenant_id: str) -> list[Any]:
        return list((await self.session.execute(text(
            "SELECT * FROM webhook_endpoints WHERE tenant_id = :t ORDER BY created_at"),
            {"t": tenant_id})).all())

    async def rotate(self, tenant_id: str, endpoint_id: str, secret: str) -> Any | None:
        """The new secret signs from now on; the old one keeps signing beside it for 24 h."""
        return (await self.session.execute(text(
            "UPDATE webhook_endpoints SET previous_secret = secret, secret = :s, "
            "previous_valid_until = now() + interval '24 hours' WHERE id = :i AND tenant_id = :t "
            "RETURNING *"), {"s": secret, "i": endpoint_id, "t": tenant_id})).first()

    async def deliveries(self, tenant_id: str, endpoint_id: str | None = None,
                         status: str | None = None, limit: int = 200) -> list[Any]:
        return list((await self.session.execute(text(
            "SELECT d.*, o.type, coalesce((SELECT json_agg(json_build_object('at', a.at, "
            "'status_code', a.status_code, 'error', a.error) ORDER BY a.id) "
            "FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]') AS attempt_log "
            "FROM webhook_deliveries d JOIN outbox_events o ON o.id = d.event_id "
            "WHERE d.tenant_id = :t AND (CAST(:e AS text) IS NULL OR d.endpoint_id = :e) "
            "AND (CAST(:s AS text) IS NULL OR d.status = :s) "
            "ORDER BY d.created_at DESC LIMIT :n"),
            {"t": tenant_id, "e": endpoint_id, "s": status, "n": limit})).all())

    async def reopen(self, tenant_id: str, delivery_id: str) -> bool:
        """Mark a delivery pending again before it is re-sent (same webhook-id)."""
        return (await self.session.execute(text(
            "UPDATE webhook_deliveries SET status = 'pending' WHERE id = :d AND tenant_id = :t "
            "RETURNING id"), {"d": delivery_id, "t": tenant_id})).first() is not None
