"""Withdrawals: requested by a client, decided by admins (maker-checker), paid out."""

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
    ClientPrincipal,
    DbSession,
    Temporal,
    json_body,
    openapi_body,
)
from api.errors import ProblemError
from api.flows import status_of
from api.flowstart import Answer, FlowStart, FlowStarter, flow_refusal, start_flow
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, by_time, next_page, time_position
from api.payees import ACCOUNT_ID
from api.schemas import DecisionBody, WithdrawalCreate, money
from api.views import FlowStatusView
from contracts.errors import ErrorCode as E
from contracts.gateway import PAYOUT_PROVIDED
from contracts.money import Money, format_amount
from contracts.settings import amount_setting, approval_window
from contracts.withdrawal import WithdrawalInput
from db.ledger import LedgerRepository
from db.payees import Payee, PayeeRepository
from db.tenants import Principal, TenantRepository
from db.withdrawals import WithdrawalQueries
from workflows.withdrawal import WithdrawalWorkflow

router = APIRouter(tags=["withdrawals"])


def _limit(settings: dict[str, Any], name: str, currency: str) -> int | None:
    """A withdrawal limit or threshold (``PUT /v1/settings/withdrawals``); None: not set."""
    return amount_setting(settings, "withdrawals", name, currency)


async def _check_amount(session: AsyncSession, principal: Principal,
                        body: WithdrawalCreate, amount: Money) -> None:
    """The amount is within the per-request limit and the available balance."""
    per_request = _limit(principal.settings, "per_request_max", body.currency)
    if per_request is not None and amount.amount > per_request:
        raise ProblemError(E.OVER_LIMIT,
                           f"at most {Money(per_request, body.currency)} per withdrawal")
    balances = await LedgerRepository(session).balances(principal.tenant_id, body.user_id,
                                                   ("user_wallet",))
    available = next((b.available for b in balances if b.currency == body.currency), 0)
    if amount.amount > available:
        raise ProblemError(E.INSUFFICIENT_FUNDS,
                           f"available {Money(available, body.currency)}")


def _check_payee(body: WithdrawalCreate, payee: Payee | None) -> None:
    """A provider pays out by the method; a bank_transfer goes to the user's onboarded payout
    account (``api/payees.py``), never to bank details sent here."""
    if body.method not in PAYOUT_PROVIDED:
        raise ProblemError(E.GATEWAY_REFUSED,
                           f"no payout provider is configured for method {body.method!r}; "
                           f"withdrawals can be paid by {', '.join(PAYOUT_PROVIDED)}")
    onboard = (f"POST /v1/users/{body.user_id}/payout-account and complete Stripe's "
               "onboarding")
    if body.destination is not None and not ACCOUNT_ID.match(body.destination):
        raise ProblemError(E.VALIDATION_ERROR,
                           "bank details are not accepted: a bank_transfer is paid to the user's "
                           "payout account; leave destination out (or name that account, "
                           f"acct_…); to set one up, {onboard}")
    if payee is None:
        raise ProblemError(E.ACCOUNT_MISSING,
                           f"user {body.user_id!r} has no payout account: {onboard}")
    if body.destination is not None and body.destination != payee.account_id:
        raise ProblemError(E.VALIDATION_ERROR,
                           "destination names another account than the user's payout account")
    if not payee.payouts_enabled:
        due = ", ".join(payee.requirements_due) or "nothing listed"
        raise ProblemError(E.ACCOUNT_MISSING,
                           f"payout account {payee.account_id} cannot receive payouts yet "
                           f"(Stripe still needs: {due}): {onboard}")


async def _input(session: AsyncSession, principal: Principal, body: WithdrawalCreate,
                 amount: Money, payee: Payee | None) -> Any:
    """flow id → the workflow's input (limits and admins as of the request; the destination:
    the user's payout account, never bank details)."""
    two_admins = _limit(principal.settings, "two_admin_threshold", body.currency)
    window = approval_window(principal.settings)
    admins = await TenantRepository(session).admins(principal.tenant_id)
    destination = payee.account_id if payee is not None else ""

    def make_input(flow_id: str) -> WithdrawalInput:
        return WithdrawalInput(
            tenant_id=principal.tenant_id, flow_id=flow_id, user_id=body.user_id, amount=amount,
            method=body.method, destination=destination, requested_by=principal.actor,
            approvals_required=2 if two_admins is not None and amount.amount >= two_admins
            else 1, admins=admins, approval_window_seconds=window,
            daily_max=_limit(principal.settings, "daily_max", body.currency))
    return make_input


async def _outcome(temporal: Client, flow_id: str, state: str,
                   answer: dict[str, Any]) -> Answer:
    if state != "refused":
        return Answer(202, answer)
    return await flow_refusal(temporal, flow_id, E.OVER_LIMIT)


@router.post("/v1/withdrawals", status_code=202, openapi_extra=openapi_body(WithdrawalCreate),
             summary="Request a withdrawal; the funds are held until admins decide")
async def create_withdrawal(request: Request, principal: ClientPrincipal,
                            body: Annotated[WithdrawalCreate, Depends(json_body(WithdrawalCreate))],
                            session: DbSession, temporal: Temporal,
                            settings: AppSettings) -> JSONResponse:
    amount = money(body.amount, body.currency)
    payee = await PayeeRepository(session).get(principal.tenant_id, body.user_id)
    make_input = await _input(session, principal, body, amount, payee)

    def view(flow_id: str, state: str) -> dict[str, Any]:
        return {"flow_id": flow_id, "user_id": body.user_id,
                "amount": format_amount(amount.amount, amount.currency),
                "currency": amount.currency, "method": body.method,
                "approvals_required": make_input(flow_id).approvals_required,
                "status_url": f"/v1/withdrawals/{flow_id}", "state": state}

    async def record(flow_id: str) -> None:
        await WithdrawalQueries(session).create(
            principal.tenant_id, flow_id, body.user_id, amount.amount, amount.currency,
            body.method, make_input(flow_id).destination, principal.actor)

    async def answer(flow_id: str, state: str) -> Answer:
        return await _outcome(temporal, flow_id, state, view(flow_id, state))

    async def validate() -> None:
        await _check_amount(session, principal, body, amount)
        _check_payee(body, payee)

    return await start_flow(FlowStarter(request, session, principal, temporal, settings), FlowStart(
        kind="withdrawal", user_id=body.user_id, request=body.model_dump(),
        workflow=WithdrawalWorkflow.run, make_input=make_input, answer=answer, view=view,
        update=WithdrawalWorkflow.outcome, record=record, validate=validate,
        pending_state="requested"))


@router.get("/v1/withdrawals", summary="Withdrawals, newest first, e.g. those pending "
            "approval (admin)")
async def list_withdrawals(principal: AdminPrincipal, session: DbSession,
                           status: str | None = None, cursor: Cursor = None,
                           limit: Limit = DEFAULT_LIMIT) -> dict[str, Any]:
    rows = await WithdrawalQueries(session).list_newest_first(
        principal.tenant_id, status, limit + 1, time_position(cursor))
    page, next_cursor = next_page(rows, limit, lambda r: by_time(r.created_at, r.flow_id))
    return {"data": [{"flow_id": r.flow_id, "user_id": r.user_id, "status": r.status,
                      "amount": format_amount(r.amount, r.currency), "currency": r.currency,
                      "method": r.method, "requested_by": r.requested_by,
                      "created_at": r.created_at.isoformat()} for r in page],
            "next_cursor": next_cursor}


@router.get("/v1/withdrawals/{flow_id}", summary="A withdrawal's status and its decisions",
            response_model=FlowStatusView, response_model_exclude_unset=True)
async def get_withdrawal(flow_id: str, principal: AnyPrincipal, session: DbSession,
                         temporal: Temporal) -> dict[str, Any]:
    return await status_of(session, temporal, principal, flow_id, "withdrawal")



@router.post("/v1/withdrawals/{flow_id}/approve", summary="Approve (admin, not the requester)")
async def approve(flow_id: str, principal: AdminPrincipal,
                  body: Annotated[DecisionBody, Depends(json_body(DecisionBody))],
                  session: DbSession, temporal: Temporal) -> dict[str, Any]:
    return await decide_flow(session, temporal, principal, flow_id, "withdrawal", True,
                             body.reason)


@router.post("/v1/withdrawals/{flow_id}/reject", summary="Reject (admin)")
async def reject(flow_id: str, principal: AdminPrincipal,
                 body: Annotated[DecisionBody, Depends(json_body(DecisionBody))],
                 session: DbSession, temporal: Temporal) -> dict[str, Any]:
    return await decide_flow(session, temporal, principal, flow_id, "withdrawal", False,
                             body.reason)
