"""Flows: the status of any flow (its workflow's `status` query; with no worker to answer it,
what Temporal itself records) and the tenant's flow list."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from api.deps import ClientPrincipal, DbSession, Temporal
from api.errors import ProblemError
from api.pagination import by_time, next_page, time_position
from api.views import FlowStatusView
from contracts.errors import ErrorCode as E
from contracts.flow import FlowState, FlowStatus
from contracts.money import format_amount
from db.flows import FlowRepository
from db.tenants import Principal
from workflows import console

router = APIRouter(tags=["flows"])
# Every Temporal call the API makes outside a flow start is bounded: past it, 503.
TEMPORAL_TIMEOUT = timedelta(seconds=5)
# How long a status read waits for the `status` query before it asks whether a worker polls.
QUERY_PATIENCE = timedelta(seconds=1)
# A status answered from Temporal's own record (execution + search attributes), not the query.
VISIBILITY_SOURCE = "temporal_visibility"
# How long a refusal's answer waits for the refused flow to say why (a flow that has just closed
# is replayed by the worker to answer: seconds on a busy machine).
REFUSAL_PATIENCE = timedelta(seconds=15)
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
    """The workflow's `status` query; None once Temporal no longer knows the flow. The query
    needs a worker: when it is not answered at once and no worker polls the flow's task queue
    (or the worker never answers), what Temporal itself knows (``visible_status``) answers."""
    handle = temporal.get_workflow_handle(flow_id)
    query = asyncio.ensure_future(handle.query("status", result_type=FlowStatus,
                                               rpc_timeout=TEMPORAL_TIMEOUT))
    try:
        done, _ = await asyncio.wait({query}, timeout=QUERY_PATIENCE.total_seconds())
        if not done:
            desc = await _describe(handle)
            if desc is None:
                return None
            if not await _worker_polls(temporal, desc.task_queue):
                return visible_status(desc)
        status: FlowStatus = await query
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        desc = await _describe(handle)  # no worker answered: Temporal's own record
        return visible_status(desc) if desc is not None else None
    finally:
        query.cancel()
    return dataclasses.asdict(status)


async def refusal_of(temporal: Client, flow_id: str) -> tuple[str | None, str | None]:
    """Why a flow refused (its ``error_code`` and ``error``), for the answer to the request that
    started it: its `status` query, waited for patiently and never answered from Temporal's
    record (which names no code); when no worker answers, the typed refusal recorded in its
    history (the activity's or local activity's failure). (None, None) when neither says."""
    handle = temporal.get_workflow_handle(flow_id)
    try:
        status: FlowStatus = await asyncio.wait_for(
            handle.query("status", result_type=FlowStatus, rpc_timeout=REFUSAL_PATIENCE),
            REFUSAL_PATIENCE.total_seconds() + 1)
        if status.error_code:
            return status.error_code, status.error
    except (RPCError, TimeoutError, WorkflowQueryFailedError):
        pass
    return await _recorded_refusal(handle)


async def _recorded_refusal(handle: WorkflowHandle[Any, Any]) -> tuple[str | None, str | None]:
    """The last typed refusal (an ErrorCode) an activity of the flow failed with, from its
    history: no worker needed."""
    try:
        history = await handle.fetch_history(rpc_timeout=TEMPORAL_TIMEOUT)
    except RPCError:
        return None, None
    codes = {str(code) for code in E}
    for event in reversed(history.events):
        if event.HasField("activity_task_failed_event_attributes"):
            failure = event.activity_task_failed_event_attributes.failure
        elif event.marker_recorded_event_attributes.HasField("failure"):  # a local activity
            failure = event.marker_recorded_event_attributes.failure
        else:
            continue
        code = failure.application_failure_info.type
        if failure.HasField("application_failure_info") and code in codes:
            return code, failure.message.removeprefix(f"{code}: ") or None
    return None, None


async def _describe(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionDescription | None:
    """The workflow's execution as Temporal's history service knows it (no worker needed);
    None: unknown; 503 when Temporal does not answer."""
    try:
        return await handle.describe(rpc_timeout=TEMPORAL_TIMEOUT)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise ProblemError(E.TEMPORAL_UNAVAILABLE, "flow state is unavailable") from e


async def _worker_polls(temporal: Client, task_queue: str) -> bool:
    """Whether a worker polls the task queue for workflow tasks (one that stopped within the
    last minutes still counts: its query then times out, and Temporal's record answers)."""
    try:
        found = await temporal.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=temporal.namespace, task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW), timeout=TEMPORAL_TIMEOUT)
    except RPCError:
        return True  # cannot tell: wait for the query
    return len(found.pollers) > 0


def visible_status(desc: WorkflowExecutionDescription) -> dict[str, Any]:
    """A flow's status from what Temporal itself records (no worker needed): its execution
    status and the search attributes it upserts (``workflows/console.py``). ``source`` says
    so; steps, details and the error's detail need the `status` query (a worker)."""
    attrs = desc.typed_search_attributes
    running = desc.status in (None, WorkflowExecutionStatus.RUNNING)
    state = attrs.get(console.STATE) or ("processing" if running else "ended")
    amount, currency = attrs.get(console.AMOUNT), attrs.get(console.CURRENCY)
    out: dict[str, Any] = {
        "flow_id": desc.id, "kind": attrs.get(console.KIND) or desc.workflow_type,
        "state": state, "user_id": attrs.get(console.USER),
        "created_at": desc.start_time.isoformat(),
        "updated_at": (desc.close_time or desc.execution_time or desc.start_time).isoformat(),
        "source": VISIBILITY_SOURCE,
        "execution_status": desc.status.name if desc.status else "RUNNING"}
    if amount is not None and currency:
        out["amounts"] = {"amount": format_amount(amount, currency), "currency": currency}
    return out


async def status_of(session: AsyncSession, temporal: Client, principal: Principal,
                    flow_id: str, kind: str | None = None) -> dict[str, Any]:
    """The caller's flow's status, or — past the workflow history's retention — what the
    database remembers of it."""
    row = await own_flow(session, principal, flow_id, kind)
    status = await flow_status(temporal, flow_id)
    if status is not None:
        if status.get("source") == VISIBILITY_SOURCE:
            status.update(kind=row["kind"], user_id=status["user_id"] or row["user_id"])
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
