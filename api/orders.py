"""Orders: POST pays an order through OrderPaymentWorkflow (one per tenant and order id)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import (
    AppSettings,
    ClientPrincipal,
    DbSession,
    Temporal,
    json_body,
    openapi_body,
)
from api.errors import ProblemError
from api.flows import flow_status
from api.flowstart import Answer, FlowStart, FlowStarter, refusal, start_flow
from api.gateway_choice import choose_gateway, payment_answer
from api.schemas import OrderCreate, return_urls
from api.users import known_user
from contracts.errors import ErrorCode as E
from contracts.money import POINTS, Money, MoneyError, format_amount, parse_amount
from contracts.order import OrderPaymentInput, OrderView
from db.orders import OrderQueries
from settings import Settings
from workflows.order_payment import OrderPaymentWorkflow

router = APIRouter(tags=["orders"])


def _parts(body: OrderCreate) -> tuple[Money, int, int, int]:
    """(amount, wallet part, card part, points) in minor units, validated."""
    try:
        amount = Money(parse_amount(body.amount, body.currency), body.currency)
        wallet = (parse_amount(body.wallet_amount, body.currency)
                  if body.wallet_amount is not None else 0)
    except MoneyError as e:
        raise ProblemError(E.INVALID_AMOUNT, str(e)) from None
    if (body.method == "points") != (body.currency == POINTS):
        raise ProblemError(E.INVALID_CURRENCY, "points orders are priced in PTS, and only "
                           "they are")
    if body.method != "split" and body.wallet_amount is not None:
        raise ProblemError(E.VALIDATION_ERROR, "wallet_amount is for split payments")
    if body.method == "wallet":
        return amount, amount.amount, 0, 0
    if body.method == "card":
        return amount, 0, amount.amount, 0
    if body.method == "points":
        return amount, 0, 0, amount.amount
    if not 0 < wallet < amount.amount:
        raise ProblemError(E.INVALID_AMOUNT,
                           "a split needs a wallet_amount between zero and the order amount")
    return amount, wallet, amount.amount - wallet, 0


def _answer(inp: OrderPaymentInput, view: OrderView | None,
            state: str = "processing", settings: Settings | None = None) -> dict[str, Any]:
    cur = inp.amount.currency
    answer: dict[str, Any] = {
        "flow_id": inp.flow_id, "order_id": inp.order_id, "user_id": inp.user_id,
        "state": view.state if view else state, "method": inp.method,
        "amount": format_amount(inp.amount.amount, cur), "currency": cur,
        "parts": {"wallet": format_amount(inp.wallet_amount, cur),
                  "card": format_amount(inp.card_amount, cur), "points": str(inp.points)},
        "status_url": f"/v1/orders/{inp.order_id}",
    }
    if view and view.payment:
        p = view.payment
        answer["payment"] = ({"gateway": p.gateway, "payment_id": p.payment_id,
                              "client_secret": p.client_secret, "checkout_url": p.checkout_url}
                             if settings is None else payment_answer(
                                 settings, p, Money(inp.card_amount, inp.amount.currency)))
        answer["expires_at"] = p.expires_at
    return answer


def _outcome(inp: OrderPaymentInput, view: OrderView, settings: Settings) -> Answer:
    """Paid (final), awaiting its card payment (final once the payment exists), or failed."""
    if view.state == "failed":
        return refusal(view.error_code, view.error, E.PAYMENT_FAILED,
                       flow_id=inp.flow_id, order_id=inp.order_id)
    return Answer(201, _answer(inp, view, settings=settings),
                  view.state == "paid" or view.payment is not None)


@router.post("/v1/orders", status_code=201, openapi_extra=openapi_body(OrderCreate),
             summary="Pay an order from the wallet, in points, by card or split")
async def create_order(request: Request, principal: ClientPrincipal,
                       body: Annotated[OrderCreate, Depends(json_body(OrderCreate))],
                       session: DbSession, temporal: Temporal,
                       settings: AppSettings) -> JSONResponse:
    amount, wallet, card, points = _parts(body)
    gateway = choose_gateway(settings, principal, body.gateway)
    success_url, cancel_url = return_urls(body.success_url, body.cancel_url,
                                          settings.walletflow_env == "production",
                                          principal.settings)
    await known_user(session, principal, body.user_id)

    def make_input(flow_id: str) -> OrderPaymentInput:
        return OrderPaymentInput(
            tenant_id=principal.tenant_id, flow_id=flow_id, order_id=body.order_id,
            user_id=body.user_id, amount=amount, method=body.method, wallet_amount=wallet,
            card_amount=card, points=points, expires_in_seconds=settings.topup_expiry_seconds,
            success_url=success_url, cancel_url=cancel_url, gateway=gateway)

    async def record(flow_id: str) -> None:
        await OrderQueries(session).create(
            principal.tenant_id, body.order_id, flow_id, body.user_id, amount.amount,
            amount.currency, body.method, wallet, card, points)

    async def answer(flow_id: str, view: OrderView) -> Answer:
        return _outcome(make_input(flow_id), view, settings)

    return await start_flow(FlowStarter(request, session, principal, temporal, settings), FlowStart(
        kind="order", user_id=body.user_id, request=body.model_dump(),
        workflow=OrderPaymentWorkflow.run, make_input=make_input, answer=answer,
        view=lambda flow_id, state: _answer(make_input(flow_id), None, state),
        update=OrderPaymentWorkflow.outcome, record=record,
        flow_id=f"{principal.tenant_slug}:order:{body.order_id}"))


def _order_view(o: dict[str, Any]) -> dict[str, Any]:
    cur = o["currency"]
    refundable = (o["amount"] - o["reserved_refunds"]
                  if o["status"] in ("paid", "partially_refunded") else 0)
    return {
        "order_id": o["order_id"], "flow_id": o["flow_id"], "user_id": o["user_id"],
        "status": o["status"], "error": o["error"], "method": o["method"],
        "amount": format_amount(o["amount"], cur), "currency": cur,
        "parts": {"wallet": format_amount(o["wallet_amount"], cur),
                  "card": format_amount(o["card_amount"], cur), "points": str(o["points"])},
        "refunded": format_amount(o["refunded"], cur),
        "refundable": format_amount(refundable, cur),
        "payment_id": o["payment_id"], "created_at": o["created_at"].isoformat(),
        "updated_at": o["updated_at"].isoformat(),
    }


async def known_order(session: AsyncSession, tenant_id: str, order_id: str) -> dict[str, Any]:
    order = await OrderQueries(session).get(tenant_id, order_id)
    if order is None:
        raise ProblemError(E.ORDER_NOT_FOUND, f"no order {order_id!r}")
    return order


@router.get("/v1/orders/{order_id}", summary="An order: status, amounts by method, its flow")
async def get_order(order_id: str, principal: ClientPrincipal, session: DbSession,
                    temporal: Temporal) -> dict[str, Any]:
    order = _order_view(await known_order(session, principal.tenant_id, order_id))
    flow = await flow_status(temporal, order["flow_id"])
    return order if flow is None else order | {"flow": flow}
