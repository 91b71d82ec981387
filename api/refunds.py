"""Refunds of paid orders: POST starts a RefundWorkflow; admins approve or reject large ones."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.decisions import decide
from api.deps import admin_principal, any_principal, db_session, json_body, openapi_body
from api.errors import PROBLEM_BASE, ProblemError
from api.flows import own_flow, query_status
from api.flowstart import idempotency_key, start_once
from api.schemas import DecisionBody, RefundCreate
from contracts.flow import FlowStatus
from contracts.money import Money, MoneyError, format_amount, parse_amount
from contracts.refund import RefundInput
from db.repositories import Principal, TenantRepository
from workflows.refund import RefundWorkflow

router = APIRouter(tags=["refunds"])
WAIT_SECONDS = 20.0
STATUS_CODES = {"refunded": 201, "awaiting_approval": 202, "awaiting_gateway": 202}


def _problem(status: int, code: str, detail: str | None, **extra: Any) -> dict[str, Any]:
    return {"type": PROBLEM_BASE + code, "title": code.replace("_", " ").capitalize(),
            "status": status, "code": code, "detail": detail, **extra}


@router.post("/v1/orders/{order_id}/refunds", status_code=201,
             openapi_extra=openapi_body(RefundCreate),
             summary="Refund part or all of a paid order (to the wallet or the original method)")
async def create_refund(order_id: str, request: Request,
                        principal: Principal = Depends(any_principal),
                        body: RefundCreate = Depends(json_body(RefundCreate)),
                        session: AsyncSession = Depends(db_session)) -> JSONResponse:
    order = (await session.execute(text(
        "SELECT * FROM orders WHERE tenant_id = :t AND order_id = :o"),
        {"t": principal.tenant_id, "o": order_id})).first()
    if order is None:
        raise ProblemError(404, "order_not_found", f"no order {order_id!r}")
    o = order._mapping
    if body.currency != o["currency"]:
        raise ProblemError(422, "currency_mismatch", f"the order is in {o['currency']}")
    try:
        amount = Money(parse_amount(body.amount, body.currency), body.currency)
    except MoneyError as e:
        raise ProblemError(422, "invalid_amount", str(e)) from None
    if o["status"] not in ("paid", "partially_refunded"):
        raise ProblemError(409, "not_refundable", f"the order is {o['status']}")
    left = o["amount"] - o["reserved_refunds"]
    if amount.amount > left:
        raise ProblemError(422, "refund_exceeds_paid", f"at most "
                           f"{format_amount(left, o['currency'])} can still be refunded")
    threshold = ((principal.settings.get("refunds") or {}).get("approval_threshold") or {}
                 ).get(body.currency)
    needs_approval = threshold is not None and amount.amount >= parse_amount(
        str(Decimal(threshold)), body.currency)
    admins = await TenantRepository(session).admins(principal.tenant_id)
    settings = request.app.state.settings

    async def start(flow_id: str) -> tuple[int, dict[str, Any], bool]:
        inp = RefundInput(
            tenant_id=principal.tenant_id, flow_id=flow_id, order_id=order_id,
            order_flow_id=o["flow_id"], user_id=o["user_id"], amount=amount,
            destination=body.destination, requested_by=principal.actor,
            needs_approval=needs_approval, admins=admins)
        await session.execute(text(
            "INSERT INTO refunds (tenant_id, flow_id, order_id, amount, currency, destination, "
            "requested_by) VALUES (:t, :f, :o, :a, :c, :d, :r) ON CONFLICT DO NOTHING"),
            {"t": principal.tenant_id, "f": flow_id, "o": order_id, "a": amount.amount,
             "c": amount.currency, "d": body.destination, "r": principal.actor})
        await session.commit()
        operation = WithStartWorkflowOperation(
            RefundWorkflow.run, inp, id=flow_id, task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
        answer = {"flow_id": flow_id, "order_id": order_id,
                  "amount": format_amount(amount.amount, amount.currency),
                  "currency": amount.currency, "destination": body.destination,
                  "needs_approval": needs_approval, "status_url": f"/v1/refunds/{flow_id}"}
        try:
            state = await asyncio.wait_for(
                request.app.state.temporal.execute_update_with_start_workflow(
                    RefundWorkflow.outcome, start_workflow_operation=operation, id="outcome"),
                WAIT_SECONDS)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            return 202, answer | {"state": "processing"}, False
        except (WorkflowUpdateFailedError, WorkflowAlreadyStartedError):
            return 200, answer | {"state": "closed"}, False
        if state in STATUS_CODES:
            return STATUS_CODES[state], answer | {"state": state}, state == "refunded"
        status: FlowStatus = await request.app.state.temporal.get_workflow_handle(
            flow_id).query("status", result_type=FlowStatus)
        code = "refund_exceeds_paid" if "refund_exceeds_paid" in (status.error or "") else (
            f"refund_{state}")
        return 422, _problem(422, code, status.error, flow_id=flow_id), True

    return await start_once(request, session, principal, "refund", o["user_id"],
                            {"order_id": order_id, **body.model_dump()}, start,
                            flow_id=f"{principal.tenant_slug}:refund:{idempotency_key(request)}")


@router.get("/v1/refunds/{flow_id}", summary="A refund's status")
async def get_refund(flow_id: str, request: Request,
                     principal: Principal = Depends(any_principal),
                     session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    await own_flow(session, principal, flow_id, "refund")
    return await query_status(request, flow_id)


async def _decide(request: Request, flow_id: str, principal: Principal, session: AsyncSession,
                  body: DecisionBody, approve: bool) -> dict[str, Any]:
    await own_flow(session, principal, flow_id, "refund")
    result = await decide(request.app.state.temporal, flow_id, principal.actor, approve,
                          body.reason)
    return {"flow_id": flow_id, "decision": result, "admin": principal.actor}


@router.post("/v1/refunds/{flow_id}/approve", summary="Approve a refund (admin, not the requester)")
async def approve_refund(flow_id: str, request: Request,
                         principal: Principal = Depends(admin_principal),
                         body: DecisionBody = Depends(json_body(DecisionBody)),
                         session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    return await _decide(request, flow_id, principal, session, body, True)


@router.post("/v1/refunds/{flow_id}/reject", summary="Reject a refund (admin)")
async def reject_refund(flow_id: str, request: Request,
                        principal: Principal = Depends(admin_principal),
                        body: DecisionBody = Depends(json_body(DecisionBody)),
                        session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    return await _decide(request, flow_id, principal, session, body, False)

