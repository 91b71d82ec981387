"""Tenants and their API keys: who is calling (``Principal``), keys created and checked,
the tenant's admins and settings. Nothing here commits: the caller owns the transaction (or,
given an autocommit connection, each statement is its own: the API's key lookup, one round
trip instead of BEGIN + SELECT + ROLLBACK)."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from contracts import settings as rules
from db.settings_audit import SettingsAudit


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
    def __init__(self, session: AsyncSession | AsyncConnection):
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

    async def settings(self, tenant_id: str) -> dict[str, Any]:
        """The tenant's settings document (``tenants.settings``)."""
        value = (await self.session.execute(
            text("SELECT settings FROM tenants WHERE id = :t"), {"t": tenant_id})).scalar_one()
        return dict(value or {})

    async def create_key(self, tenant_id: str, scopes: list[str], actor: str) -> str:
        key_id, key = new_api_key()
        await self.session.execute(
            text("INSERT INTO api_keys (id, tenant_id, key_hash, scopes, actor) "
                 "VALUES (:id, :t, :h, :sc, :a)"),
            {"id": key_id, "t": tenant_id, "h": hash_key(key), "sc": scopes, "a": actor},
        )
        return key

    async def revoke_key(self, tenant_id: str, key_id: str) -> tuple[list[str], str] | None:
        """Revoke a tenant's active key; its (scopes, actor), or None when there is no such
        active key."""
        row = (await self.session.execute(text(
            "UPDATE api_keys SET revoked_at = now() WHERE id = :k AND tenant_id = :t "
            "AND revoked_at IS NULL RETURNING scopes, actor"),
            {"k": key_id, "t": tenant_id})).first()
        return (list(row.scopes), row.actor) if row is not None else None

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


class TenantSettings:
    """A tenant's settings document as an admin changes it (read under a row lock, then
    replaced, the change audited). Nothing here commits."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def lock(self, tenant_id: str) -> dict[str, Any]:
        value = (await self.session.execute(
            text("SELECT settings FROM tenants WHERE id = :t FOR UPDATE"),
            {"t": tenant_id})).scalar_one()
        return dict(value or {})

    async def replace(self, tenant_id: str, settings: dict[str, Any]) -> None:
        await self.session.execute(
            text("UPDATE tenants SET settings = CAST(:s AS jsonb) WHERE id = :t"),
            {"s": json.dumps(settings), "t": tenant_id})

    async def show(self, tenant_id: str, group: str) -> dict[str, Any]:
        """The group as it applies now."""
        return rules.view(group, await TenantRepository(self.session).settings(tenant_id))

    async def change(self, tenant_id: str, group: str, changes: object, actor: str,
                     key_id: str | None = None, production: bool = False) -> dict[str, Any]:
        """Apply ``changes`` to ``group`` by the rules of ``contracts/settings.py`` (raising
        ``SettingsError``) and audit it (who, the group before and after); the group as it
        applies now. A change that changes nothing is not recorded."""
        current = await self.lock(tenant_id)
        updated = rules.change(group, current, changes, production)
        old, new = rules.view(group, current), rules.view(group, updated)
        if updated != current:
            await self.replace(tenant_id, updated)
            await SettingsAudit(self.session).record(tenant_id, actor, key_id, group, old, new)
        return new
