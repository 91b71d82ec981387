"""Starting a flow under the tenant-scoped Idempotency-Key (IETF draft semantics).

The same key with the same request returns the same flow and the same answer; the same key
with a different request is 422 ``idempotency_key_reused``; a missing key is 400. The flow's
workflow id is derived from the tenant and the key, so a retried request finds the same flow.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ProblemError
from db.repositories import FlowRepository, Principal
from observability import bind

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key")
    if key is None:
        raise ProblemError(400, "idempotency_key_missing",
                           "flow-starting requests need an Idempotency-Key header")
    key = key.strip().strip('"')
    if not KEY_PATTERN.match(key):
        raise ProblemError(400, "idempotency_key_invalid",
                           "Idempotency-Key must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return key


def flow_id_for(principal: Principal, kind: str, key: str) -> str:
    return f"{principal.tenant_slug}:{kind}:{key}"


def fingerprint(request: Request, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.url.path}\n{canonical}".encode()).hexdigest()


StartFn = Callable[[str], Awaitable[tuple[int, dict[str, Any], bool]]]


async def start_once(request: Request, session: AsyncSession, principal: Principal, kind: str,
                     user_id: str | None, body: Any, start: StartFn,
                     flow_id: str | None = None) -> JSONResponse:
    """Claim the key, then run ``start(flow_id)`` → (status, response, final). A final answer is
    stored and replayed for every later request with the same key. ``flow_id`` overrides the
    key-derived id when the business object has its own (an order is paid once)."""
    key = idempotency_key(request)
    flows = FlowRepository(session)
    row = await flows.claim(principal.tenant_id, key, flow_id or flow_id_for(principal, kind, key),
                            kind, user_id, fingerprint(request, body))
    await session.commit()
    bind(flow_id=row["flow_id"] if row else flow_id)
    if row is None:
        raise ProblemError(409, "flow_exists", "this flow was already started under another "
                           "Idempotency-Key", flow_id=flow_id)
    if row["request_hash"] != fingerprint(request, body) or row["kind"] != kind:
        raise ProblemError(422, "idempotency_key_reused",
                           "this Idempotency-Key was already used with a different request",
                           flow_id=row["flow_id"])
    if row["response"] is not None:
        return JSONResponse(row["response"], status_code=row["status_code"],
                            headers={"Idempotent-Replayed": "true"})
    status, response, final = await start(row["flow_id"])
    if final:
        await flows.store_response(principal.tenant_id, key, status, response)
        await session.commit()
    media = "application/problem+json" if status >= 400 else "application/json"
    return JSONResponse(response, status_code=status, media_type=media)
