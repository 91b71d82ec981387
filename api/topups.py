"""Top-ups: POST starts a TopUpWorkflow and answers with what the client needs to pay."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.deps import AppSettings, ClientPrincipal, DbSession, Temporal, json_body, openapi_body
from api.errors import ProblemError
from api.flowstart import Answer, FlowStart, FlowStarter, start_flow
from api.gateway_choice import choose_gateway, payment_answer
from api.schemas import TopUpCreate, money, return_urls
from api.users import known_user
from contracts.errors import ErrorCode as E
from contracts.gateway import CheckoutInfo
from contracts.money import POINTS, Money, format_amount, parse_amount
from contracts.topup import TopUpInput
from settings import Settings
from workflows.topup import TopUpWorkflow

router = APIRouter(tags=["top-ups"])


def _amounts(settings: Settings, body: TopUpCreate) -> tuple[Money, Money]:
    """(charge, credit): what the user pays and what lands in the wallet."""
    if body.package is not None:
        if body.amount is not None or body.currency is not None:
            raise ProblemError(E.VALIDATION_ERROR, "give either a package or amount+currency")
        package = settings.points_packages.get(body.package)
        if package is None:
            raise ProblemError(E.UNKNOWN_PACKAGE, f"no points package {body.package!r}")
        charge = Money(parse_amount(package.price, package.currency), package.currency)
        return charge, Money(package.points, POINTS)
    if body.amount is None or body.currency is None:
        raise ProblemError(E.VALIDATION_ERROR, "amount and currency are required")
    if body.currency == POINTS:
        raise ProblemError(E.INVALID_CURRENCY, "points are bought as a package, not topped up")
    charge = money(body.amount, body.currency)
    return charge, charge


def _answer(inp: TopUpInput, checkout: CheckoutInfo | None, state: str,
            settings: Settings | None = None) -> dict[str, Any]:
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
        answer["payment"] = ({"gateway": checkout.gateway, "payment_id": checkout.payment_id,
                              "client_secret": checkout.client_secret,
                              "checkout_url": checkout.checkout_url} if settings is None else
                             payment_answer(settings, checkout, inp.charge,
                                            f"/v1/topups/{inp.flow_id}/verify"))
        answer["expires_at"] = checkout.expires_at
    return answer


@router.post("/v1/topups", status_code=201, openapi_extra=openapi_body(TopUpCreate),
             summary="Top up a wallet (or buy a points package) through the payment gateway")
async def create_topup(request: Request, principal: ClientPrincipal,
                       body: Annotated[TopUpCreate, Depends(json_body(TopUpCreate))],
                       session: DbSession, temporal: Temporal,
                       settings: AppSettings) -> JSONResponse:
    charge, credit = _amounts(settings, body)
    gateway = choose_gateway(settings, principal, body.gateway)
    success_url, cancel_url = return_urls(body.success_url, body.cancel_url,
                                          settings.walletflow_env == "production",
                                          principal.settings)
    await known_user(session, principal, body.user_id)

    def make_input(flow_id: str) -> TopUpInput:
        return TopUpInput(tenant_id=principal.tenant_id, user_id=body.user_id, flow_id=flow_id,
                          charge=charge, credit=credit, package=body.package,
                          expires_in_seconds=settings.topup_expiry_seconds, gateway=gateway,
                          success_url=success_url, cancel_url=cancel_url)

    async def answer(flow_id: str, checkout: CheckoutInfo) -> Answer:
        return Answer(201, _answer(make_input(flow_id), checkout, "awaiting_payment", settings))

    return await start_flow(FlowStarter(request, session, principal, temporal, settings), FlowStart(
        kind="topup", user_id=body.user_id, request=body.model_dump(),
        workflow=TopUpWorkflow.run, make_input=make_input, answer=answer,
        view=lambda flow_id, state: _answer(make_input(flow_id), None, state),
        update=TopUpWorkflow.checkout, update_id="checkout", pending_state="creating_payment",
        update_failed=E.GATEWAY_REFUSED))
