"""Flows: the status of any flow (its workflow's `status` query) and the tenant's flow list."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.deps import ClientPrincipal, DbSession, Temporal
from api.errors import ProblemError
from api.pagination import by_time, next_page, time_position
from api.views import FlowStatusView
from contracts.errors import ErrorCode as E
from contracts.flow import FlowState, FlowStatus
from db.flows import FlowRepository
from db.tenants import Principal

router = APIRouter(tags=["flows"])
# Every Temporal call the API makes outside a flow start is bounded: past it, 503.
TEMPORAL_TIMEOUT = timedelta(seconds=5)
_NOT_FOUND = {"refund": E.REFUND_NOT_FOUND, "withdrawal": E.WITHDRAWAL_NOT_FOUND}


async def own_flow(session: AsyncSession, principal: Principal, flow_id: str,
                   kind: str | None = None) -> dict[str, Any]:
    """The flow's row; 404 unless it is a flow (of this kind) started by the caller's tenant."""
    row = await FlowRepository(session).get(principal.tenant_id, flow_id)
    if row is None or (kind is not None and row["kind"] != kind):
        code = _NOT_FOUND.get(kind or "", E.FLOW_NOT_FOUND)
        raise ProblemError(code, f"no {kind or 'flow'} {flow_id!r} in this tenant")
    return row


async def flow_status(temporal: Client, flow_id: str) -> dict[str, Any] | None:
    """The workflow's `status` query; None once Temporal no longer knows the flow."""
    try:
        status: FlowStatus = await temporal.get_workflow_handle(flow_id).query(
            "status", result_type=FlowStatus, rpc_timeout=TEMPORAL_TIMEOUT)
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise ProblemError(E.TEMPORAL_UNAVAILABLE, "flow state is unavailable") from e
        return None
    return dataclasses.asdict(status)


async def status_of(session: AsyncSession, temporal: Client, principal: Principal,
                    flow_id: str, kind: str | None = None) -> dict[str, Any]:
    """The caller's flow's status, or — past the workflow history's retention — what the
    database remembers of it."""
    row = await own_flow(session, principal, flow_id, kind)
    status = await flow_status(temporal, flow_id)
    if status is not None:
        return status
    return {"flow_id": flow_id, "kind": row["kind"], "state": FlowState.ARCHIVED,
            "user_id": row["user_id"], "created_at": row["created_at"].isoformat()}


@router.get("/v1/flows/{flow_id}", summary="A flow's status: state, amounts, steps, error",
            response_model=FlowStatusView, response_model_exclude_unset=True)
async def get_flow(flow_id: str, principal: ClientPrincipal, session: DbSession,
                   temporal: Temporal) -> dict[str, Any]:
    return await status_of(session, temporal, principal, flow_id)


@router.get("/v1/flows", summary="The tenant's flows, newest first")
async def list_flows(principal: ClientPrincipal, session: DbSession, kind: str | None = None,
                     cursor: str | None = None,
                     limit: int = Query(50, ge=1, le=200)) -> dict[str, Any]:
    rows = await FlowRepository(session).list(principal.tenant_id, kind, time_position(cursor),
                                              limit + 1)
    page, next_cursor = next_page(rows, limit, lambda r: by_time(r["created_at"], r["flow_id"]))
    data = [{"flow_id": r["flow_id"], "kind": r["kind"], "user_id": r["user_id"],
             "idempotency_key": r["idempotency_key"], "created_at": r["created_at"].isoformat()}
            for r in page]
    return {"data": data, "next_cursor": next_cursor}
