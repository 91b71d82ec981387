"""Flows: the tenant-scoped Idempotency-Key store. Nothing here commits: the caller owns the
transaction."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


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

    async def list(self, tenant_id: str, kind: str | None, before: tuple[Any, str] | None,
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
