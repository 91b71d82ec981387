"""Refunds of paid orders: POST starts a RefundWorkflow; admins approve or reject large ones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.decisions import decide_flow
from api.deps import (
    AdminPrincipal,
    AnyPrincipal,
    AppSettings,
    DbSession,
    Temporal,
    json_body,
    openapi_body,
)
from api.errors import ProblemError
from api.flows import status_of
from api.flowstart import (
    Answer,
    FlowStart,
    FlowStarter,
    flow_refusal,
    idempotency_key,
    start_flow,
)
from api.orders import known_order
from api.schemas import DecisionBody, RefundCreate, money
from api.views import FlowStatusView
from contracts.errors import ErrorCode as E
from contracts.money import Money, format_amount
from contracts.refund import RefundInput
from contracts.settings import amount_setting
from db.refunds import RefundQueries
from db.tenants import Principal, TenantRepository
from workflows.refund import RefundWorkflow

router = APIRouter(tags=["refunds"])
STATUS_CODES = {"refunded": 201, "awaiting_approval": 202, "awaiting_gateway": 202}
# The code of a refusal whose flow names none, by the state it ended in.
_FALLBACK = {"refused": E.NOT_REFUNDABLE, "rejected": E.REJECTED, "expired": E.EXPIRED,
             "failed": E.REFUND_FAILED}


# An order once paid stays refundable up to what is left (nothing, once fully refunded).
PAID = ("paid", "partially_refunded", "refunded")


def _amount(body: RefundCreate, order: dict[str, Any]) -> Money:
    """The refund's amount, in the order's currency."""
    if body.currency != order["currency"]:
        raise ProblemError(E.CURRENCY_MISMATCH, f"the order is in {order['currency']}")
    return money(body.amount, body.currency)


def _refundable(order: dict[str, Any], amount: Money) -> None:
    """One rule: an order never paid is not refundable (409); an amount above what can still
    be refunded — nothing, once fully refunded — exceeds what was paid (422)."""
    if order["status"] not in PAID:
        raise ProblemError(E.NOT_REFUNDABLE, f"the order is {order['status']}")
    left = Money(order["amount"] - order["reserved_refunds"], order["currency"])
    if amount.amount > left.amount:
        raise ProblemError(E.REFUND_EXCEEDS_PAID, f"at most {left} can still be refunded")


async def _needs_approval(session: AsyncSession, principal: Principal, order_id: str,
                          flow_id: str, amount: Money) -> bool:
    """Maker-checker per order, cumulatively: an admin approves once the order's refunds so far
    (reserved — those awaiting approval included — or requested) plus this one reach the
    tenant's threshold, so many small refunds cannot add up past it unseen. Runs under the
    order's lock until the refund's row is committed (concurrent requests count each other)."""
    threshold = amount_setting(principal.settings, "refunds", "approval_threshold",
                               amount.currency)
    if threshold is None:
        return False
    held, mine = await RefundQueries(session).held_for_order(principal.tenant_id, order_id,
                                                             flow_id)
    return held + (0 if mine else amount.amount) >= threshold


async def _record(session: AsyncSession, principal: Principal, flow_id: str, amount: Money,
                  body: RefundCreate, order_id: str) -> bool:
    """The refund's row, and whether it needs approval (decided under the order's lock)."""
    needs = await _needs_approval(session, principal, order_id, flow_id, amount)
    await RefundQueries(session).create(principal.tenant_id, flow_id, order_id, amount.amount,
                                        amount.currency, body.destination, principal.actor)
    return needs


async def _outcome(temporal: Client, flow_id: str, state: str,
                   answer: dict[str, Any]) -> Answer:
    if state in STATUS_CODES:
        return Answer(STATUS_CODES[state], answer | {"state": state}, state == "refunded")
    return await flow_refusal(temporal, flow_id, _FALLBACK.get(state, E.REFUND_FAILED))


@router.post("/v1/orders/{order_id}/refunds", status_code=201,
             openapi_extra=openapi_body(RefundCreate),
             summary="Refund part or all of a paid order (to the wallet or the original method)")
async def create_refund(order_id: str, request: Request, principal: AnyPrincipal,
                        body: Annotated[RefundCreate, Depends(json_body(RefundCreate))],
                        session: DbSession, temporal: Temporal,
                        settings: AppSettings) -> JSONResponse:
    order = await known_order(session, principal.tenant_id, order_id)
    amount = _amount(body, order)
    decided: dict[str, bool] = {}  # needs_approval, decided by record() under the order's lock
    admins = await TenantRepository(session).admins(principal.tenant_id)

    def make_input(flow_id: str) -> RefundInput:
        return RefundInput(
            tenant_id=principal.tenant_id, flow_id=flow_id, order_id=order_id,
            order_flow_id=order["flow_id"], user_id=order["user_id"], amount=amount,
            destination=body.destination, requested_by=principal.actor,
            needs_approval=decided["needs_approval"], admins=admins)

    def view(flow_id: str, state: str) -> dict[str, Any]:
        return {"flow_id": flow_id, "order_id": order_id,
                "amount": format_amount(amount.amount, amount.currency),
                "currency": amount.currency, "destination": body.destination,
                "needs_approval": decided["needs_approval"],
                "status_url": f"/v1/refunds/{flow_id}", "state": state}

    async def record(flow_id: str) -> None:
        decided["needs_approval"] = await _record(session, principal, flow_id, amount, body,
                                                  order_id)

    async def answer(flow_id: str, state: str) -> Answer:
        return await _outcome(temporal, flow_id, state, view(flow_id, state))

    async def validate() -> None:
        _refundable(order, amount)

    return await start_flow(FlowStarter(request, session, principal, temporal, settings), FlowStart(
        kind="refund", user_id=order["user_id"],
        request={"order_id": order_id, **body.model_dump()},
        workflow=RefundWorkflow.run, make_input=make_input, answer=answer, view=view,
        update=RefundWorkflow.outcome, record=record, validate=validate,
        flow_id=f"{principal.tenant_slug}:refund:{idempotency_key(request)}"))


@router.get("/v1/refunds/{flow_id}", summary="A refund's status", response_model=FlowStatusView,
            response_model_exclude_unset=True)
async def get_refund(flow_id: str, principal: AnyPrincipal, session: DbSession,
                     temporal: Temporal) -> dict[str, Any]:
    return await status_of(session, temporal, principal, flow_id, "refund")



@router.post("/v1/refunds/{flow_id}/approve", summary="Approve a refund (admin, not the requester)")
async def approve_refund(flow_id: str, principal: AdminPrincipal,
                         body: Annotated[DecisionBody, Depends(json_body(DecisionBody))],
                         session: DbSession, temporal: Temporal) -> dict[str, Any]:
    return await decide_flow(session, temporal, principal, flow_id, "refund", True,
                             body.reason)


@router.post("/v1/refunds/{flow_id}/reject", summary="Reject a refund (admin)")
async def reject_refund(flow_id: str, principal: AdminPrincipal,
                        body: Annotated[DecisionBody, Depends(json_body(DecisionBody))],
                        session: DbSession, temporal: Temporal) -> dict[str, Any]:
    return await decide_flow(session, temporal, principal, flow_id, "refund", False,
                             body.reason)
