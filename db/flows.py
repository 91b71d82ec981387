"""Flows: the tenant-scoped Idempotency-Key store. Nothing here commits: the caller owns the
transaction."""

from __future__ import annotations

import builtins
import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# What ``claim`` returns of a key's row (besides ``claimed``).
_CLAIMED = ("flow_id, kind, request_hash, response, status_code, "
            "coalesce(locked_until > now(), false) AS in_flight")


class FlowRepository:
    """The tenant-scoped Idempotency-Key store: one row per flow-starting request."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def claim(self, tenant_id: str, key: str, flow_id: str, kind: str, user_id: str | None,
                    request_hash: str, lease_seconds: float | None = None
                    ) -> dict[str, Any] | None:
        """Record the key (first request wins, holding it for ``lease_seconds``) and return the
        stored row, with ``claimed`` (this call inserted it) and ``in_flight`` (another request
        holds its lease; no lease when ``lease_seconds`` is None); None when the flow id
        already belongs to another key (e.g. an order paid under another key)."""
        # One round trip for a new key: the insert returns the stored row itself (now() is
        # the transaction's, so ``in_flight`` is what a later select would say); a repeat key
        # (or a flow id taken by another key) inserts nothing and is looked up.
        inserted = (await self.session.execute(
            text("INSERT INTO flows (tenant_id, idempotency_key, flow_id, kind, user_id, "
                 "request_hash, locked_until) VALUES (:t, :k, :f, :kind, :u, :h, "
                 "now() + make_interval(secs => CAST(:lease AS double precision))) "
                 "ON CONFLICT DO NOTHING "
                 f"RETURNING {_CLAIMED}"),
            {"t": tenant_id, "k": key, "f": flow_id, "kind": kind, "u": user_id,
             "h": request_hash, "lease": lease_seconds},
        )).first()
        if inserted is not None:
            return dict(inserted._mapping) | {"claimed": True}
        row = (await self.session.execute(
            text(f"SELECT {_CLAIMED} FROM flows WHERE tenant_id = :t AND idempotency_key = :k"),
            {"t": tenant_id, "k": key},
        )).first()
        return dict(row._mapping) | {"claimed": False} if row else None

    async def take_over(self, tenant_id: str, key: str, lease_seconds: float) -> bool:
        """Hold the lease of a key whose flow has no final answer and no request starting it
        (a slow flow answered 202 before, or a request that died): True when this call got it."""
        row = (await self.session.execute(
            text("UPDATE flows SET locked_until = now() + make_interval(secs => :lease) "
                 "WHERE tenant_id = :t AND idempotency_key = :k AND response IS NULL "
                 "AND (locked_until IS NULL OR locked_until <= now()) RETURNING flow_id"),
            {"t": tenant_id, "k": key, "lease": lease_seconds},
        )).first()
        return row is not None

    async def store_response(self, tenant_id: str, key: str, status_code: int,
                             response: dict[str, Any]) -> None:
        """The final answer, replayed for every later request with the key (ends the lease)."""
        await self.session.execute(
            text("UPDATE flows SET response = CAST(:r AS jsonb), status_code = :s, "
                 "locked_until = NULL "
                 "WHERE tenant_id = :t AND idempotency_key = :k AND response IS NULL"),
            {"t": tenant_id, "k": key, "s": status_code, "r": json.dumps(response)},
        )

    async def unlock(self, tenant_id: str, key: str) -> None:
        """End the lease without a final answer: the next request with the key asks again."""
        await self.session.execute(
            text("UPDATE flows SET locked_until = NULL "
                 "WHERE tenant_id = :t AND idempotency_key = :k AND response IS NULL"),
            {"t": tenant_id, "k": key},
        )

    async def release(self, tenant_id: str, key: str, flow_id: str) -> None:
        """Undo a claim whose workflow never started: the key and the rows recorded for the
        flow while still in their first state (an order, a refund, a withdrawal), so the key
        can be used again and nothing claims a flow that does not exist."""
        params = {"t": tenant_id, "k": key, "f": flow_id}
        for sql in (
            "DELETE FROM refunds WHERE tenant_id = :t AND flow_id = :f AND status = 'requested'",
            "DELETE FROM withdrawals WHERE tenant_id = :t AND flow_id = :f "
            "AND status = 'requested'",
            "DELETE FROM orders WHERE tenant_id = :t AND flow_id = :f AND status = 'pending'",
            "DELETE FROM flows WHERE tenant_id = :t AND idempotency_key = :k "
            "AND response IS NULL",
        ):
            await self.session.execute(text(sql), params)

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

    async def orphan_candidates(self, tenant_id: str | None, grace_seconds: float,
                                max_age_seconds: float, limit: int = 200
                                ) -> builtins.list[dict[str, Any]]:
        """Claimed rows that may never have got a workflow (the API died between claiming and
        starting it): no final answer, no lease held, older than ``grace_seconds`` but younger
        than ``max_age_seconds`` (an older flow's workflow may be past history retention), and
        nothing of the flow in the ledger or at a gateway. The caller asks Temporal."""
        rows = await self.session.execute(
            text("SELECT f.tenant_id::text AS tenant_id, f.idempotency_key, f.flow_id, f.kind "
                 "FROM flows f WHERE f.response IS NULL "
                 "AND (f.locked_until IS NULL OR f.locked_until <= now()) "
                 "AND f.created_at < now() - make_interval(secs => :grace) "
                 "AND f.created_at > now() - make_interval(secs => :age) "
                 "AND (CAST(:t AS text) IS NULL OR f.tenant_id = CAST(:t AS uuid)) "
                 "AND NOT EXISTS (SELECT 1 FROM gateway_objects g WHERE g.flow_id = f.flow_id) "
                 "AND NOT EXISTS (SELECT 1 FROM transfers x WHERE x.flow_id = f.flow_id) "
                 "ORDER BY f.created_at LIMIT :n"),
            {"t": tenant_id, "grace": float(grace_seconds), "age": float(max_age_seconds),
             "n": limit},
        )
        return [dict(r._mapping) for r in rows]

    async def remove_orphan(self, tenant_id: str, key: str, flow_id: str) -> bool:
        """Remove an orphan row (as ``release`` does for a start that failed) unless a request
        took its lease or stored its answer meanwhile; True when removed."""
        row = (await self.session.execute(
            text("SELECT flow_id FROM flows WHERE tenant_id = CAST(:t AS uuid) "
                 "AND idempotency_key = :k AND flow_id = :f AND response IS NULL "
                 "AND (locked_until IS NULL OR locked_until <= now()) FOR UPDATE"),
            {"t": tenant_id, "k": key, "f": flow_id},
        )).first()
        if row is None:
            return False
        await self.release(tenant_id, key, flow_id)
        return True
