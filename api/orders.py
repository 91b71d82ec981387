"""Orders: POST pays an order through OrderPaymentWorkflow (one per tenant and order id)."""

from __future__ import annotations

import asyncio
import dataclasses
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
from temporalio.service import RPCError, RPCStatusCode

from api.deps import client_principal, db_session, json_body, openapi_body
from api.errors import PROBLEM_BASE, ProblemError
from api.flowstart import start_once
from api.schemas import OrderCreate
from contracts.flow import FlowStatus
from contracts.money import POINTS, Money, MoneyError, format_amount, parse_amount
from contracts.order import OrderPaymentInput, OrderView
from db.repositories import Principal, UserRepository
from workflows.order_payment import OrderPaymentWorkflow

router = APIRouter(tags=["orders"])
OUTCOME_WAIT_SECONDS = 20.0


def _parts(body: OrderCreate) -> tuple[Money, int, int, int]:
    """(amount, wallet part, card part, points) in minor units, validated."""
    try:
        amount = Money(parse_amount(body.amount, body.currency), body.currency)
        wallet = (parse_amount(body.wallet_amount, body.currency)
                  if body.wallet_amount is not None else 0)
    except MoneyError as e:
        raise ProblemError(422, "invalid_amount", str(e)) from None
    if (body.method == "points") != (body.currency == POINTS):
        raise ProblemError(422, "invalid_currency", "points orders are priced in PTS, and only "
                           "they are")
    if body.method != "split" and body.wallet_amount is not None:
        raise ProblemError(422, "validation_error", "wallet_amount is for split payments")
    if body.method == "wallet":
        return amount, amount.amount, 0, 0
    if body.method == "card":
        return amount, 0, amount.amount, 0
    if body.method == "points":
        return amount, 0, 0, amount.amount
    if not 0 < wallet < amount.amount:
        raise ProblemError(422, "invalid_amount",
                           "a split needs a wallet_amount between zero and the order amount")
    return amount, wallet, amount.amount - wallet, 0


def _answer(inp: OrderPaymentInput, view: OrderView | None) -> dict[str, Any]:
    cur = inp.amount.currency
    answer: dict[str, Any] = {
        "flow_id": inp.flow_id, "order_id": inp.order_id, "user_id": inp.user_id,
        "state": view.state if view else "processing", "method": inp.method,
        "amount": format_amount(inp.amount.amount, cur), "currency": cur,
        "parts": {"wallet": format_amount(inp.wallet_amount, cur),
                  "card": format_amount(inp.card_amount, cur), "points": str(inp.points)},
        "status_url": f"/v1/orders/{inp.order_id}",
    }
    if view and view.payment:
        p = view.payment
        answer["payment"] = {"gateway": p.gateway, "payment_id": p.payment_id,
                             "client_secret": p.client_secret, "checkout_url": p.checkout_url}
        answer["expires_at"] = p.expires_at
    return answer


@router.post("/v1/orders", status_code=201, openapi_extra=openapi_body(OrderCreate),
             summary="Pay an order from the wallet, in points, by card or split")
async def create_order(request: Request,
                       principal: Principal = Depends(client_principal),
                       body: OrderCreate = Depends(json_body(OrderCreate)),
                       session: AsyncSession = Depends(db_session)) -> JSONResponse:
    amount, wallet, card, points = _parts(body)
    if await UserRepository(session).get(principal.tenant_id, body.user_id) is None:
        raise ProblemError(404, "user_not_found", f"no user {body.user_id!r} in this tenant")
    settings = request.app.state.settings
    flow_id = f"{principal.tenant_slug}:order:{body.order_id}"

    async def start(flow_id: str) -> tuple[int, dict[str, Any], bool]:
        inp = OrderPaymentInput(
            tenant_id=principal.tenant_id, flow_id=flow_id, order_id=body.order_id,
            user_id=body.user_id, amount=amount, method=body.method, wallet_amount=wallet,
            card_amount=card, points=points, expires_in_seconds=settings.topup_expiry_seconds)
        await session.execute(text(
            "INSERT INTO orders (tenant_id, order_id, flow_id, user_id, amount, currency, method, "
            "wallet_amount, card_amount, points) VALUES (:t, :o, :f, :u, :a, :c, :m, :w, :cd, :p) "
            "ON CONFLICT DO NOTHING"),
            {"t": principal.tenant_id, "o": body.order_id, "f": flow_id, "u": body.user_id,
             "a": amount.amount, "c": amount.currency, "m": body.method, "w": wallet, "cd": card,
             "p": points})
        await session.commit()
        operation = WithStartWorkflowOperation(
            OrderPaymentWorkflow.run, inp, id=flow_id, task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
        try:
            view: OrderView = await asyncio.wait_for(
                request.app.state.temporal.execute_update_with_start_workflow(
                    OrderPaymentWorkflow.outcome, start_workflow_operation=operation,
                    id="outcome"),
                OUTCOME_WAIT_SECONDS)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            return 202, _answer(inp, None), False
        except (WorkflowUpdateFailedError, WorkflowAlreadyStartedError):
            return 200, _answer(inp, None) | {"state": "closed"}, False
        if view.state == "failed":
            code = ("insufficient_funds" if (view.error or "").startswith("insufficient_funds")
                    else "payment_failed")
            status = 402 if code == "insufficient_funds" else 422
            return status, {"type": PROBLEM_BASE + code, "title": code.replace("_", " ").title(),
                            "status": status, "code": code, "detail": view.error,
                            "flow_id": flow_id, "order_id": body.order_id}, True
        return 201, _answer(inp, view), view.state == "paid" or view.payment is not None

    return await start_once(request, session, principal, "order", body.user_id,
                            body.model_dump(), start, flow_id=flow_id)


@router.get("/v1/orders/{order_id}", summary="An order: status, amounts by method, its flow")
async def get_order(order_id: str, request: Request,
                    principal: Principal = Depends(client_principal),
                    session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    row = (await session.execute(text(
        "SELECT * FROM orders WHERE tenant_id = :t AND order_id = :o"),
        {"t": principal.tenant_id, "o": order_id})).first()
    if row is None:
        raise ProblemError(404, "order_not_found", f"no order {order_id!r}")
    o = row._mapping
    cur = o["currency"]
    out: dict[str, Any] = {
        "order_id": order_id, "flow_id": o["flow_id"], "user_id": o["user_id"],
        "status": o["status"], "error": o["error"], "method": o["method"],
        "amount": format_amount(o["amount"], cur), "currency": cur,
        "parts": {"wallet": format_amount(o["wallet_amount"], cur),
                  "card": format_amount(o["card_amount"], cur), "points": str(o["points"])},
        "refunded": format_amount(o["refunded"], cur),
        "refundable": format_amount(o["amount"] - o["reserved_refunds"], cur)
        if o["status"] in ("paid", "partially_refunded") else format_amount(0, cur),
        "payment_id": o["payment_id"], "created_at": o["created_at"].isoformat(),
        "updated_at": o["updated_at"].isoformat(),
    }
    try:
        flow: FlowStatus = await request.app.state.temporal.get_workflow_handle(
            o["flow_id"]).query("status", result_type=FlowStatus)
        out["flow"] = dataclasses.asdict(flow)
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise ProblemError(503, "temporal_unavailable", "try again later") from e
    return out
