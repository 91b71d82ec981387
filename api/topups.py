"""Top-ups: POST starts a TopUpWorkflow and answers with what the client needs to pay."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.deps import client_principal, db_session, json_body, openapi_body
from api.errors import ProblemError
from api.flowstart import start_once
from api.schemas import TopUpCreate
from contracts.gateway import CheckoutInfo
from contracts.money import POINTS, Money, MoneyError, format_amount, parse_amount
from contracts.topup import TopUpInput
from db.repositories import Principal, UserRepository
from workflows.topup import TopUpWorkflow

router = APIRouter(tags=["top-ups"])

# How long a request waits for the gateway payment before answering 202 (the flow goes on).
CHECKOUT_WAIT_SECONDS = 20.0


def _amounts(request: Request, body: TopUpCreate) -> tuple[Money, Money]:
    """(charge, credit): what the user pays and what lands in the wallet."""
    if body.package is not None:
        if body.amount is not None or body.currency is not None:
            raise ProblemError(422, "validation_error", "give either a package or amount+currency")
        package = request.app.state.settings.points_packages.get(body.package)
        if package is None:
            raise ProblemError(422, "unknown_package", f"no points package {body.package!r}")
        charge = Money(parse_amount(package.price, package.currency), package.currency)
        return charge, Money(package.points, POINTS)
    if body.amount is None or body.currency is None:
        raise ProblemError(422, "validation_error", "amount and currency are required")
    if body.currency == POINTS:
        raise ProblemError(422, "invalid_currency", "points are bought as a package, not topped up")
    try:
        charge = Money(parse_amount(body.amount, body.currency), body.currency)
    except MoneyError as e:
        raise ProblemError(422, "invalid_amount", str(e)) from None
    return charge, charge


def _answer(inp: TopUpInput, checkout: CheckoutInfo | None, state: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "flow_id": inp.flow_id,
        "kind": "topup",
        "state": state,
        "user_id": inp.user_id,
        "amount": format_amount(inp.charge.amount, inp.charge.currency),
        "currency": inp.charge.currency,
        "credit": {"amount": format_amount(inp.credit.amount, inp.credit.currency),
                   "currency": inp.credit.currency},
        "status_url": f"/v1/flows/{inp.flow_id}",
    }
    if inp.package:
        answer["package"] = inp.package
    if checkout is not None:
        answer["payment"] = {"gateway": checkout.gateway, "payment_id": checkout.payment_id,
                             "client_secret": checkout.client_secret,
                             "checkout_url": checkout.checkout_url}
        answer["expires_at"] = checkout.expires_at
    return answer


@router.post("/v1/topups", status_code=201, openapi_extra=openapi_body(TopUpCreate),
             summary="Top up a wallet (or buy a points package) through the payment gateway")
async def create_topup(
    request: Request,
    principal: Principal = Depends(client_principal),
    body: TopUpCreate = Depends(json_body(TopUpCreate)),
    session: AsyncSession = Depends(db_session),
) -> JSONResponse:
    charge, credit = _amounts(request, body)
    if await UserRepository(session).get(principal.tenant_id, body.user_id) is None:
        raise ProblemError(404, "user_not_found", f"no user {body.user_id!r} in this tenant")
    settings = request.app.state.settings
    temporal = request.app.state.temporal

    async def start(flow_id: str) -> tuple[int, dict[str, Any], bool]:
        inp = TopUpInput(tenant_id=principal.tenant_id, user_id=body.user_id, flow_id=flow_id,
                         charge=charge, credit=credit, package=body.package,
                         expires_in_seconds=settings.topup_expiry_seconds)
        operation = WithStartWorkflowOperation(
            TopUpWorkflow.run, inp, id=flow_id, task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        try:
            checkout = await asyncio.wait_for(
                temporal.execute_update_with_start_workflow(
                    TopUpWorkflow.checkout, start_workflow_operation=operation, id="checkout"),
                CHECKOUT_WAIT_SECONDS,
            )
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            # The gateway is slow or down; the flow keeps retrying. Not final: a retry with the
            # same key asks again.
            return 202, _answer(inp, None, "creating_payment"), False
        except WorkflowUpdateFailedError as e:
            cause = e.cause.cause if e.cause and e.cause.cause else e.cause
            return 422, {"type": "https://walletflow.dev/problems/gateway_refused",
                         "title": "Gateway refused", "status": 422, "code": "gateway_refused",
                         "detail": str(cause or e), "flow_id": flow_id}, True
        except WorkflowAlreadyStartedError:
            # The flow already finished and its first answer was never stored: report it.
            return 200, _answer(inp, None, "closed"), False
        return 201, _answer(inp, checkout, "awaiting_payment"), True

    return await start_once(request, session, principal, "topup", body.user_id,
                            body.model_dump(), start)
