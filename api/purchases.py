"""Purchases: reported by the shop widget (signed), Shopify/WooCommerce webhooks or a
server-to-server call, all ending in one PurchaseCreditWorkflow per (tenant, store order id)."""

from __future__ import annotations

import dataclasses
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import (
    admin_principal,
    client_principal,
    db_session,
    json_body,
    openapi_body,
    raw_body,
)
from api.errors import ProblemError
from api.flowstart import idempotency_key
from api.schemas import (
    ORDER_ID,
    USER_ID,
    InteractionReport,
    PurchaseReport,
    RefundReport,
    StoreCredentialCreate,
)
from api.signatures import widget_valid
from contracts.flow import FlowStatus
from contracts.money import Money, MoneyError, parse_amount
from contracts.purchase import PurchaseInput, StoreEvent
from db.repositories import FlowRepository, Principal, StoreRepository, UserRepository
from workflows.purchase_credit import PurchaseCreditWorkflow

router = APIRouter(tags=["purchases"])
FUTURE_SKEW = timedelta(minutes=5)


def purchase_flow_id(tenant_slug: str, order_id: str) -> str:
    return f"{tenant_slug}:purchase:{order_id}"


def money(amount: str, currency: str) -> Money:
    try:
        return Money(parse_amount(amount, currency), currency)
    except MoneyError as e:
        raise ProblemError(422, "invalid_amount", str(e)) from None


def when(value: datetime | None) -> datetime:
    now = datetime.now(UTC)
    if value is None:
        return now
    if value.tzinfo is None:
        raise ProblemError(422, "validation_error", "timestamps need a timezone (e.g. Z)")
    if value > now + FUTURE_SKEW:
        raise ProblemError(422, "validation_error", "the timestamp is in the future")
    return value


async def report_purchase(request: Request, session: AsyncSession, tenant_id: str,
                          tenant_slug: str, order_id: str, user_id: str, amount: Money,
                          platform: str, *, email: str | None = None, shop: str | None = None,
                          session_id: str | None = None, occurred_at: datetime | None = None
                          ) -> tuple[int, dict[str, Any]]:
    """Record the purchase once and start its flow once, whichever route reports it."""
    if not re.match(USER_ID, user_id):
        raise ProblemError(422, "validation_error", f"invalid user id {user_id[:40]!r}")
    if not re.match(ORDER_ID, order_id):
        raise ProblemError(422, "validation_error", f"invalid order id {order_id[:40]!r}")
    at = when(occurred_at)
    flow_id = purchase_flow_id(tenant_slug, order_id)
    await UserRepository(session).create(tenant_id, user_id, email)  # stores register users
    new, row = await StoreRepository(session).record_purchase(
        tenant_id, order_id, flow_id, user_id, email, amount.amount, amount.currency, platform,
        shop, at)
    await FlowRepository(session).claim(tenant_id, f"purchase-order:{order_id}", flow_id,
                                        "purchase", row["user_id"], "store-order")
    await session.commit()
    temporal: Client = request.app.state.temporal
    inp = PurchaseInput(
        tenant_id=tenant_id, flow_id=flow_id, store_order_id=order_id, user_id=row["user_id"],
        amount=Money(row["amount"], row["currency"]), platform=row["platform"],
        occurred_at=row["occurred_at"].isoformat(), email=row["email"], shop=row["shop"],
        session_id=session_id)
    # Started even for a known order: a crash between the insert and the start must not lose
    # the flow; the workflow id makes the start idempotent.
    try:
        await temporal.start_workflow(
            PurchaseCreditWorkflow.run, inp, id=flow_id,
            task_queue=request.app.state.settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
    except WorkflowAlreadyStartedError:
        pass  # the flow already finished
    body = {"flow_id": flow_id, "order_id": order_id, "duplicate": not new,
            "status_url": f"/v1/purchases/{order_id}"}
    return (201 if new else 200), body


async def report_store_event(request: Request, tenant_slug: str, order_id: str,
                             event: StoreEvent) -> str:
    """Signal the purchase's flow; returns the outcome (signalled / unknown_order)."""
    handle = request.app.state.temporal.get_workflow_handle(purchase_flow_id(tenant_slug,
                                                                             order_id))
    try:
        await handle.signal("store_event", event)
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise ProblemError(503, "temporal_unavailable", "try again later") from e
        return "flow_closed_or_unknown"
    return "signalled"


# -- server to server ------------------------------------------------------------------------


@router.post("/v1/purchases", status_code=201, openapi_extra=openapi_body(PurchaseReport),
             summary="Report a purchase (server to server); one flow per store order id")
async def create_purchase(request: Request,
                          principal: Principal = Depends(client_principal),
                          body: PurchaseReport = Depends(json_body(PurchaseReport)),
                          session: AsyncSession = Depends(db_session)) -> JSONResponse:
    idempotency_key(request)  # required and well formed; the order id is the dedupe key
    amount = money(body.amount, body.currency)
    status, answer = await report_purchase(
        request, session, principal.tenant_id, principal.tenant_slug, body.order_id,
        body.user_id, amount, "api", email=body.email, shop=body.shop_name,
        session_id=body.session_id, occurred_at=body.occurred_at)
    return JSONResponse(answer, status_code=status)


async def _known_order(session: AsyncSession, principal: Principal, order_id: str
                       ) -> dict[str, Any]:
    row = await StoreRepository(session).purchase(principal.tenant_id, order_id)
    if row is None:
        raise ProblemError(404, "purchase_not_found", f"no purchase {order_id!r}")
    return row


@router.post("/v1/purchases/{order_id}/cancel", summary="The store cancelled the order")
async def cancel_purchase(order_id: str, request: Request,
                          principal: Principal = Depends(client_principal),
                          session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    key = idempotency_key(request)
    await _known_order(session, principal, order_id)
    outcome = await report_store_event(request, principal.tenant_slug, order_id,
                                       StoreEvent(f"api:{key}", "cancelled"))
    return {"order_id": order_id, "outcome": outcome}


@router.post("/v1/purchases/{order_id}/refunds", openapi_extra=openapi_body(RefundReport),
             summary="The store refunded part (or all) of the order")
async def refund_purchase(order_id: str, request: Request,
                          principal: Principal = Depends(client_principal),
                          body: RefundReport = Depends(json_body(RefundReport)),
                          session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    key = idempotency_key(request)
    row = await _known_order(session, principal, order_id)
    refund = money(body.amount, body.currency)
    if refund.currency != row["currency"]:
        raise ProblemError(422, "currency_mismatch", f"the order is in {row['currency']}")
    outcome = await report_store_event(request, principal.tenant_slug, order_id,
                                       StoreEvent(f"api:{key}", "refunded", refund=refund))
    return {"order_id": order_id, "outcome": outcome}


@router.get("/v1/purchases/{order_id}", summary="A purchase: attribution, cashback, state")
async def get_purchase(order_id: str, request: Request,
                       principal: Principal = Depends(client_principal),
                       session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    row = await _known_order(session, principal, order_id)
    handle = request.app.state.temporal.get_workflow_handle(row["flow_id"])
    try:
        status: FlowStatus = await handle.query("status", result_type=FlowStatus)
        return dataclasses.asdict(status)
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise ProblemError(503, "temporal_unavailable", "try again later") from e
    return {"flow_id": row["flow_id"], "kind": "purchase", "state": row["state"],
            "user_id": row["user_id"]}


@router.post("/v1/stores", status_code=201, openapi_extra=openapi_body(StoreCredentialCreate),
             summary="Connect the widget, a Shopify shop or a WooCommerce store (admin)")
async def add_store(body: StoreCredentialCreate = Depends(json_body(StoreCredentialCreate)),
                    principal: Principal = Depends(admin_principal),
                    session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    public_key = body.public_key or (f"pk_{secrets.token_hex(12)}" if body.platform == "widget"
                                     else None)
    if public_key is None:
        raise ProblemError(422, "validation_error", "public_key (shop domain / URL) is required")
    secret = await StoreRepository(session).add_credential(principal.tenant_id, body.platform,
                                                           public_key)
    await session.commit()
    return {"platform": body.platform, "public_key": public_key, "secret": secret}


# -- the shop widget (signed with the tenant's widget secret, no API key) ---------------------


async def widget_tenant(request: Request, body: bytes = Depends(raw_body),
                        session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    """Find the tenant by the widget's public key and verify the signature on the raw bytes,
    the timestamp (±300 s) and that this exact signed call was never seen before."""
    key = request.headers.get("x-walletflow-key")
    ts = request.headers.get("x-walletflow-timestamp")
    sig = request.headers.get("x-walletflow-signature")
    if not key or not ts or not sig:
        raise ProblemError(401, "signature_missing", "X-Walletflow-Key, -Timestamp and "
                           "-Signature are required")
    candidates = await StoreRepository(session).credentials("widget", key)
    tenant = next((c for c in candidates if widget_valid(body, ts, sig, c["secret"])), None)
    if tenant is None:
        raise ProblemError(401, "signature_invalid",
                           "unknown key, bad signature or timestamp outside ±300 s")
    if not await StoreRepository(session).first_use_of_signature(sig.strip().lower()):
        await session.rollback()
        raise ProblemError(409, "replayed", "this signed call was already received")
    await session.commit()
    return tenant


@router.post("/v1/widget/purchases", status_code=201, openapi_extra=openapi_body(PurchaseReport),
             summary="The shop widget reports a purchase (seed 000 track-purchase)")
async def widget_purchase(request: Request, tenant: dict[str, Any] = Depends(widget_tenant),
                          body: PurchaseReport = Depends(json_body(PurchaseReport)),
                          session: AsyncSession = Depends(db_session)) -> JSONResponse:
    amount = money(body.amount, body.currency)
    status, answer = await report_purchase(
        request, session, tenant["tenant_id"], tenant["slug"], body.order_id, body.user_id,
        amount, "widget", email=body.email, shop=body.shop_name, session_id=body.session_id,
        occurred_at=body.occurred_at)
    return JSONResponse(answer, status_code=status)


@router.post("/v1/widget/interactions", status_code=201,
             openapi_extra=openapi_body(InteractionReport),
             summary="The widget records a view, click or chat (for attribution)")
async def widget_interaction(tenant: dict[str, Any] = Depends(widget_tenant),
                             body: InteractionReport = Depends(json_body(InteractionReport)),
                             session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    if not (body.user_id or body.email or body.session_id):
        raise ProblemError(422, "validation_error", "give a user_id, an email or a session_id")
    interaction_id = await StoreRepository(session).record_interaction(
        tenant["tenant_id"], body.user_id, body.email, body.session_id, body.kind,
        when(body.occurred_at))
    await session.commit()
    return {"interaction_id": interaction_id}
