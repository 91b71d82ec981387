"""Flows: the status of any flow (its workflow's `status` query) and the tenant's flow list."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError, RPCStatusCode

from api.deps import client_principal, db_session
from api.errors import ProblemError
from api.pagination import decode_cursor, encode_cursor
from contracts.flow import FlowStatus
from db.repositories import FlowRepository, Principal

router = APIRouter(tags=["flows"])


async def own_flow(session: AsyncSession, principal: Principal, flow_id: str, kind: str) -> None:
    """404 unless ``flow_id`` is a flow of this kind started by the caller's tenant."""
    row = await FlowRepository(session).get(principal.tenant_id, flow_id)
    if row is None or row["kind"] != kind:
        raise ProblemError(404, f"{kind}_not_found", f"no {kind} {flow_id!r}")


async def query_status(request: Request, flow_id: str) -> dict[str, Any]:
    status: FlowStatus = await request.app.state.temporal.get_workflow_handle(flow_id).query(
        "status", result_type=FlowStatus)
    return dataclasses.asdict(status)


@router.get("/v1/flows/{flow_id}", summary="A flow's status: state, amounts, steps, error")
async def get_flow(flow_id: str, request: Request,
                   principal: Principal = Depends(client_principal),
                   session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    row = await FlowRepository(session).get(principal.tenant_id, flow_id)
    if row is None:
        raise ProblemError(404, "flow_not_found", f"no flow {flow_id!r} in this tenant")
    handle = request.app.state.temporal.get_workflow_handle(flow_id)
    try:
        status: FlowStatus = await handle.query("status", result_type=FlowStatus)
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise ProblemError(503, "temporal_unavailable", "flow state is unavailable") from e
        # Past the workflow history retention: what the database remembers.
        return {"flow_id": flow_id, "kind": row["kind"], "state": "archived",
                "user_id": row["user_id"], "created_at": row["created_at"].isoformat()}
    return dataclasses.asdict(status)


@router.get("/v1/flows", summary="The tenant's flows, newest first")
async def list_flows(kind: str | None = None, cursor: str | None = None,
                     limit: int = Query(50, ge=1, le=200),
                     principal: Principal = Depends(client_principal),
                     session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    before = decode_cursor(cursor)
    if before is not None and not (isinstance(before, list) and len(before) == 2):
        raise ProblemError(400, "invalid_cursor", "the cursor is malformed")
    if before is not None:
        try:
            before = (datetime.fromisoformat(before[0]), str(before[1]))
        except (TypeError, ValueError):
            raise ProblemError(400, "invalid_cursor", "the cursor is malformed") from None
    rows = await FlowRepository(session).list(principal.tenant_id, kind, before, limit + 1)
    data = [{"flow_id": r["flow_id"], "kind": r["kind"], "user_id": r["user_id"],
             "idempotency_key": r["idempotency_key"], "created_at": r["created_at"].isoformat()}
            for r in rows[:limit]]
    next_cursor = (encode_cursor([rows[limit - 1]["created_at"].isoformat(),
                                  rows[limit - 1]["flow_id"]]) if len(rows) > limit else None)
    return {"data": data, "next_cursor": next_cursor}
