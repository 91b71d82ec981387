"""Stores: credentials (widget keys, Shopify/WooCommerce secrets), widget interactions and
replay guard, purchases as reported. Nothing here commits: the caller owns the transaction."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# A store's id: stable, derived from what identifies it within its tenant.
STORE_ID = "('st_' || left(md5(platform || ':' || public_key), 24))"
_VIEW = f"{STORE_ID} AS store_id, platform, public_key, created_at"


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

    async def create(self, tenant_id: str, platform: str, public_key: str,
                     secret: str) -> dict[str, Any] | None:
        """Connect a store; None when the tenant already has this (platform, public key)."""
        row = (await self.session.execute(
            text("INSERT INTO store_credentials (tenant_id, platform, public_key, secret) "
                 "VALUES (:t, :p, :k, :s) ON CONFLICT DO NOTHING RETURNING " + _VIEW),
            {"t": tenant_id, "p": platform, "k": public_key, "s": secret})).first()
        return dict(row._mapping) if row else None

    async def store(self, tenant_id: str, store_id: str) -> dict[str, Any] | None:
        """A store (id, platform, public key, created_at; never its secret)."""
        row = (await self.session.execute(
            text(f"SELECT {_VIEW} FROM store_credentials WHERE tenant_id = :t "
                 f"AND {STORE_ID} = :i"), {"t": tenant_id, "i": store_id})).first()
        return dict(row._mapping) if row else None

    async def page(self, tenant_id: str, after: tuple[Any, str] | None,
                   limit: int) -> list[dict[str, Any]]:
        """The tenant's stores, oldest first, after the (created_at, store id) position."""
        rows = await self.session.execute(
            text(f"SELECT {_VIEW} FROM store_credentials WHERE tenant_id = :t "
                 f"AND (CAST(:ac AS timestamptz) IS NULL OR (created_at, {STORE_ID}) > "
                 f"(CAST(:ac AS timestamptz), CAST(:ai AS text))) "
                 f"ORDER BY created_at, {STORE_ID} LIMIT :lim"),
            {"t": tenant_id, "ac": after[0] if after else None,
             "ai": after[1] if after else None, "lim": limit})
        return [dict(r._mapping) for r in rows]

    async def replace_secret(self, tenant_id: str, store_id: str, secret: str) -> bool:
        """The new secret verifies from now on; the old one no longer does."""
        return (await self.session.execute(
            text(f"UPDATE store_credentials SET secret = :s WHERE tenant_id = :t "
                 f"AND {STORE_ID} = :i RETURNING public_key"),
            {"t": tenant_id, "i": store_id, "s": secret})).first() is not None

    async def delete(self, tenant_id: str, store_id: str) -> bool:
        """Disconnect a store: its signed calls are refused from now on."""
        return (await self.session.execute(
            text(f"DELETE FROM store_credentials WHERE tenant_id = :t AND {STORE_ID} = :i "
                 "RETURNING public_key"), {"t": tenant_id, "i": store_id})).first() is not None

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
