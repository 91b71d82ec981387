"""The settings audit (the ``settings_audit`` table): one row per change to a tenant's settings
— who, which group, the group before and after, when. Nothing here commits: the caller owns the
transaction."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class SettingsAudit:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def record(self, tenant_id: str, actor: str, key_id: str | None, group: str,
                     old: dict[str, Any], new: dict[str, Any]) -> None:
        await self.session.execute(text(
            "INSERT INTO settings_audit (tenant_id, actor, key_id, setting_group, old_value, "
            "new_value) VALUES (:t, :a, :k, :g, CAST(:o AS jsonb), CAST(:n AS jsonb))"),
            {"t": tenant_id, "a": actor, "k": key_id, "g": group, "o": json.dumps(old),
             "n": json.dumps(new)})

    async def newest_first(self, tenant_id: str, before_id: int | None, limit: int,
                           group: str | None = None) -> list[dict[str, Any]]:
        """The tenant's changes, newest first, those older than ``before_id`` (a cursor)."""
        rows = await self.session.execute(text(
            "SELECT id, actor, key_id, setting_group, old_value, new_value, changed_at "
            "FROM settings_audit WHERE tenant_id = :t "
            "AND (CAST(:b AS bigint) IS NULL OR id < :b) "
            "AND (CAST(:g AS text) IS NULL OR setting_group = :g) ORDER BY id DESC LIMIT :lim"),
            {"t": tenant_id, "b": before_id, "g": group, "lim": limit})
        return [dict(r._mapping) for r in rows]
