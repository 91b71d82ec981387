"""Withdrawals: requested by a client, decided by admins (maker-checker), paid out."""

from __future__ import annotations

import asyncio
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
from api.deps import (
    admin_principal,
    any_principal,
    client_principal,
    db_session,
    json_body,
    openapi_body,
)
from api.errors import PROBLEM_BASE, ProblemError
from api.flows import own_flow, query_status
from api.flowstart import start_once
from api.schemas import DecisionBody, WithdrawalCreate
from contracts.flow import FlowStatus
from contracts.money import Money, MoneyError, format_amount, parse_amount
from contracts.withdrawal import WithdrawalInput
from db.ledger import LedgerRepository
from db.repositories import Principal, TenantRepository
from workflows.withdrawal import WithdrawalWorkflow

router = APIRouter(tags=["withdrawals"])


def _limit(settings: dict[str, Any], name: str, currency: str) -> int | None:
    value = ((settings.get("withdrawals") or {}).get(name) or {}).get(currency)
    return parse_amount(str(value), currency) if value is not None else None


@router.post("/v1/withdrawals", status_code=202, openapi_extra=openapi_body(WithdrawalCreate),
             summary="Request a withdrawal; the funds are held until admins decide")
async def create_withdrawal(request: Request, principal: Principal = Depends(client_principal),
                            body: WithdrawalCreate = Depends(json_body(WithdrawalCreate)),
                            session: AsyncSession = Depends(db_session)) -> JSONResponse:
    try:
        amount = Money(parse_amount(body.amount, body.currency), body.currency)
    except MoneyError as e:
        raise ProblemError(422, "invalid_amount", str(e)) from None
    per_request = _limit(principal.settings, "per_request_max", body.currency)
    if per_request is not None and amount.amount > per_request:
        raise ProblemError(422, "over_limit", f"at most {format_amount(per_request, body.currency)}"
                           f" {body.currency} per withdrawal")
    balances = await LedgerRepository(session).balances(principal.tenant_id, body.user_id,
                                                        ("user_wallet",))
    available = next((b.available for b in balances if b.currency == body.currency), 0)
    if amount.amount > available:
        raise ProblemError(402, "insufficient_funds", f"available "
                           f"{format_amount(available, body.currency)} {body.currency}")
    two_admins = _limit(principal.settings, "two_admin_threshold", body.currency)
    window = int((principal.settings.get("withdrawals") or {}).get(
        "approval_window_seconds", 72 * 3600))
    admins = await TenantRepository(session).admins(principal.tenant_id)
    settings = request.app.state.settings

    async def start(flow_id: str) -> tuple[int, dict[str, Any], bool]:
        inp = WithdrawalInput(
            tenant_id=principal.tenant_id, flow_id=flow_id, user_id=body.user_id, amount=amount,
            method=body.method, destination=body.destination, requested_by=principal.actor,
            approvals_required=2 if two_admins is not None and amount.amount >= two_admins
            else 1, admins=admins, approval_window_seconds=window,
            daily_max=_limit(principal.settings, "daily_max", body.currency))
        await session.execute(text(
            "INSERT INTO withdrawals (tenant_id, flow_id, user_id, amount, currency, method, "
            "destination, requested_by) VALUES (:t, :f, :u, :a, :c, :m, :d, :r) "
            "ON CONFLICT DO NOTHING"),
            {"t": principal.tenant_id, "f": flow_id, "u": body.user_id, "a": amount.amount,
             "c": amount.currency, "m": body.method, "d": body.destination,
             "r": principal.actor})
        await session.commit()
        answer = {"flow_id": flow_id, "user_id": body.user_id,
                  "amount": format_amount(amount.amount, amount.currency),
                  "currency": amount.currency, "method": body.method,
                  "approvals_required": inp.approvals_required,
                  "status_url": f"/v1/withdrawals/{flow_id}"}
        try:
            state = await asyncio.wait_for(
                request.app.state.temporal.execute_update_with_start_workflow(
                    WithdrawalWorkflow.outcome, start_workflow_operation=WithStartWorkflowOperation(
                        WithdrawalWorkflow.run, inp, id=flow_id,
                        task_queue=settings.temporal_task_queue,
                        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE),
                    id="outcome"), 20)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            return 202, answer | {"state": "requested"}, False
        except (WorkflowUpdateFailedError, WorkflowAlreadyStartedError):
            return 200, answer | {"state": "closed"}, False
        if state == "refused":
            status: FlowStatus = await request.app.state.temporal.get_workflow_handle(
                flow_id).query("status", result_type=FlowStatus)
            code = (status.error or "refused").split(":", 1)[0]
            http = 402 if code == "insufficient_funds" else 422
            return http, {"type": PROBLEM_BASE + code, "title": code.replace("_", " "),
                          "status": http, "code": code, "detail": status.error,
                          "flow_id": flow_id}, True
        return 202, answer | {"state": state}, True

    return await start_once(request, session, principal, "withdrawal", body.user_id,
                            body.model_dump(), start)


@router.get("/v1/withdrawals", summary="Withdrawals, e.g. those pending approval (admin)")
async def list_withdrawals(status: str | None = None,
                           principal: Principal = Depends(admin_principal),
                           session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    rows = await session.execute(text(
        "SELECT * FROM withdrawals WHERE tenant_id = :t AND (CAST(:s AS text) IS NULL "
        "OR status = :s) ORDER BY created_at DESC LIMIT 200"),
        {"t": principal.tenant_id, "s": status})
    return {"data": [{"flow_id": r.flow_id, "user_id": r.user_id, "status": r.status,
                      "amount": format_amount(r.amount, r.currency), "currency": r.currency,
                      "method": r.method, "requested_by": r.requested_by,
                      "created_at": r.created_at.isoformat()} for r in rows]}


@router.get("/v1/withdrawals/{flow_id}", summary="A withdrawal's status and its decisions")
async def get_withdrawal(flow_id: str, request: Request,
                         principal: Principal = Depends(any_principal),
                         session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    await own_flow(session, principal, flow_id, "withdrawal")
    return await query_status(request, flow_id)


@router.post("/v1/withdrawals/{flow_id}/approve", summary="Approve (admin, not the requester)")
async def approve(flow_id: str, request: Request, principal: Principal = Depends(admin_principal),
                  body: DecisionBody = Depends(json_body(DecisionBody)),
                  session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    await own_flow(session, principal, flow_id, "withdrawal")
    result = await decide(request.app.state.temporal, flow_id, principal.actor, True, body.reason)
    return {"flow_id": flow_id, "decision": result, "admin": principal.actor}


@router.post("/v1/withdrawals/{flow_id}/reject", summary="Reject (admin)")
async def reject(flow_id: str, request: Request, principal: Principal = Depends(admin_principal),
                 body: DecisionBody = Depends(json_body(DecisionBody)),
                 session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    await own_flow(session, principal, flow_id, "withdrawal")
    result = await decide(request.app.state.temporal, flow_id, principal.actor, False,
                          body.reason)
    return {"flow_id": flow_id, "decision": result, "admin": principal.actor}
