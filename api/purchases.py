"""Purchases: reported by the shop widget (signed), Shopify/WooCommerce webhooks or a
server-to-server call, all ending in one PurchaseCreditWorkflow per (tenant, store order id)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import (
    AppSettings,
    ClientPrincipal,
    DbSession,
    RawBody,
    Temporal,
    json_body,
    openapi_body,
)
from api.errors import ProblemError
from api.flows import flow_status
from api.flowstart import commit_before_start, idempotency_key
from api.schemas import (
    ORDER_ID,
    USER_ID,
    InteractionReport,
    PurchaseReport,
    RefundReport,
    money,
)
from api.signatures import widget_valid
from api.views import FlowStatusView
from contracts.errors import ErrorCode as E
from contracts.money import Money, format_amount
from contracts.purchase import PurchaseInput, StoreEvent
from db.flows import FlowRepository
from db.ledger import LedgerRepository
from db.stores import StoreRepository
from db.tenants import Principal
from db.users import UserRepository
from settings import Settings
from workflows.console import start_options
from workflows.purchase_credit import PurchaseCreditWorkflow

router = APIRouter(tags=["purchases"])
FUTURE_SKEW = timedelta(minutes=5)


def purchase_flow_id(tenant_slug: str, order_id: str) -> str:
    return f"{tenant_slug}:purchase:{order_id}"


def when(value: datetime | None) -> datetime:
    now = datetime.now(UTC)
    if value is None:
        return now
    if value.tzinfo is None:
        raise ProblemError(E.VALIDATION_ERROR, "timestamps need a timezone (e.g. Z)")
    if value > now + FUTURE_SKEW:
        raise ProblemError(E.VALIDATION_ERROR, "the timestamp is in the future")
    return value


@dataclass
class Sale:
    """A purchase as any route reports it."""

    order_id: str
    user_id: str
    amount: Money
    platform: str
    email: str | None = None
    shop: str | None = None
    session_id: str | None = None
    occurred_at: datetime | None = None


@dataclass
class Reporter:
    """Reports what a store says (a purchase, a cancellation, a refund) to the purchase's flow,
    for one tenant."""

    session: AsyncSession
    temporal: Client
    settings: Settings
    tenant_id: str
    tenant_slug: str

    async def purchase(self, sale: Sale) -> tuple[int, dict[str, Any]]:
        """Record the purchase once and start its flow once, whichever route reports it."""
        if not re.match(USER_ID, sale.user_id):
            raise ProblemError(E.VALIDATION_ERROR, f"invalid user id {sale.user_id[:40]!r}")
        if not re.match(ORDER_ID, sale.order_id):
            raise ProblemError(E.VALIDATION_ERROR, f"invalid order id {sale.order_id[:40]!r}")
        at = when(sale.occurred_at)
        flow_id = purchase_flow_id(self.tenant_slug, sale.order_id)
        await UserRepository(self.session).create(self.tenant_id, sale.user_id, sale.email)
        new, row = await StoreRepository(self.session).record_purchase(
            self.tenant_id, sale.order_id, flow_id, sale.user_id, sale.email, sale.amount.amount,
            sale.amount.currency, sale.platform, sale.shop, at)
        await FlowRepository(self.session).claim(self.tenant_id, f"purchase-order:{sale.order_id}",
                                                 flow_id, "purchase", row["user_id"],
                                                 "store-order", lease_seconds=0)
        await commit_before_start(self.session)
        # Started even for a known order: a crash between the insert and the start must not
        # lose the flow; the workflow id makes the start idempotent.
        await self._start(PurchaseInput(
            tenant_id=self.tenant_id, flow_id=flow_id, store_order_id=sale.order_id,
            user_id=row["user_id"], amount=Money(row["amount"], row["currency"]),
            platform=row["platform"], occurred_at=row["occurred_at"].isoformat(),
            email=row["email"], shop=row["shop"], session_id=sale.session_id))
        body = {"flow_id": flow_id, "order_id": sale.order_id, "duplicate": not new,
                "status_url": f"/v1/purchases/{sale.order_id}"}
        return (201 if new else 200), body

    async def _start(self, inp: PurchaseInput) -> None:
        try:
            await self.temporal.start_workflow(
                PurchaseCreditWorkflow.run, inp, id=inp.flow_id,
                task_queue=self.settings.temporal_task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                **start_options("purchase", self.tenant_slug, inp, via="a store's order"))
        except WorkflowAlreadyStartedError:
            pass  # the flow already finished

    async def store_event(self, order_id: str, event: StoreEvent) -> str:
        """Signal the purchase's flow; returns the outcome (signalled / unknown order)."""
        handle = self.temporal.get_workflow_handle(purchase_flow_id(self.tenant_slug, order_id))
        try:
            await handle.signal("store_event", event)
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise ProblemError(E.TEMPORAL_UNAVAILABLE, "try again later") from e
            return "flow_closed_or_unknown"
        return "signalled"


def _reporter(principal: Principal, session: AsyncSession, temporal: Client,
              settings: Settings) -> Reporter:
    return Reporter(session, temporal, settings, principal.tenant_id, principal.tenant_slug)


def _sale(body: PurchaseReport, platform: str) -> Sale:
    return Sale(body.order_id, body.user_id, money(body.amount, body.currency), platform,
                email=body.email, shop=body.shop_name, session_id=body.session_id,
                occurred_at=body.occurred_at)


# -- server to server ------------------------------------------------------------------------


@router.post("/v1/purchases", status_code=201, openapi_extra=openapi_body(PurchaseReport),
             summary="Report a purchase (server to server); one flow per store order id")
async def create_purchase(request: Request, principal: ClientPrincipal,
                          body: Annotated[PurchaseReport, Depends(json_body(PurchaseReport))],
                          session: DbSession, temporal: Temporal,
                          settings: AppSettings) -> JSONResponse:
    idempotency_key(request)  # required and well formed; the order id is the dedupe key
    sale = _sale(body, "api")
    reporter = _reporter(principal, session, temporal, settings)
    status, answer = await reporter.purchase(sale)
    return JSONResponse(answer, status_code=status)


async def _known_order(session: AsyncSession, principal: Principal, order_id: str
                       ) -> dict[str, Any]:
    row = await StoreRepository(session).purchase(principal.tenant_id, order_id)
    if row is None:
        raise ProblemError(E.PURCHASE_NOT_FOUND, f"no purchase {order_id!r}")
    return row


@router.post("/v1/purchases/{order_id}/cancel", summary="The store cancelled the order")
async def cancel_purchase(order_id: str, request: Request, principal: ClientPrincipal,
                          session: DbSession, temporal: Temporal,
                          settings: AppSettings) -> dict[str, Any]:
    key = idempotency_key(request)
    await _known_order(session, principal, order_id)
    outcome = await _reporter(principal, session, temporal, settings).store_event(
        order_id, StoreEvent(f"api:{key}", "cancelled"))
    return {"order_id": order_id, "outcome": outcome}


@router.post("/v1/purchases/{order_id}/refunds", openapi_extra=openapi_body(RefundReport),
             summary="The store refunded part (or all) of the order")
async def refund_purchase(order_id: str, request: Request, principal: ClientPrincipal,
                          body: Annotated[RefundReport, Depends(json_body(RefundReport))],
                          session: DbSession, temporal: Temporal,
                          settings: AppSettings) -> dict[str, Any]:
    key = idempotency_key(request)
    row = await _known_order(session, principal, order_id)
    refund = money(body.amount, body.currency)
    if refund.currency != row["currency"]:
        raise ProblemError(E.CURRENCY_MISMATCH, f"the order is in {row['currency']}")
    outcome = await _reporter(principal, session, temporal, settings).store_event(
        order_id, StoreEvent(f"api:{key}", "refunded", refund=refund))
    return {"order_id": order_id, "outcome": outcome}


@router.get("/v1/purchases/{order_id}", summary="A purchase: attribution, cashback, state",
            response_model=FlowStatusView, response_model_exclude_unset=True)
async def get_purchase(order_id: str, principal: ClientPrincipal, session: DbSession,
                       temporal: Temporal) -> dict[str, Any]:
    row = await _known_order(session, principal, order_id)
    status = await flow_status(temporal, row["flow_id"]) or {
        "flow_id": row["flow_id"], "kind": "purchase", "state": row["state"],
        "user_id": row["user_id"]}
    return status | {"amounts": status.get("amounts", {}) | await _ledger_amounts(session, row)}


async def _ledger_amounts(session: AsyncSession, row: dict[str, Any]) -> dict[str, str]:
    """The purchase's money as the ledger has it: ``cashback`` is what the user keeps (pending
    or available, after clawbacks), ``cashback_pending`` the part still held,
    ``cashback_clawed_back`` what refunds of the order took back, ``refunded`` the refunds."""
    pending, posted, clawed = await LedgerRepository(session).purchase_cashback(
        row["tenant_id"], row["flow_id"], row["user_id"], row["store_order_id"])
    cur = row["currency"]
    return {"order": format_amount(row["amount"], cur), "currency": cur,
            "cashback": format_amount(pending + posted - clawed, cur),
            "cashback_pending": format_amount(pending, cur),
            "cashback_clawed_back": format_amount(clawed, cur),
            "refunded": format_amount(row["refunded"], cur)}


# -- the shop widget (signed with the tenant's widget secret, no API key) ---------------------


async def widget_tenant(request: Request, body: RawBody, session: DbSession) -> dict[str, Any]:
    """Find the tenant by the widget's public key and verify the signature on the raw bytes,
    the timestamp (±300 s) and that this exact signed call was never seen before."""
    key = request.headers.get("x-walletflow-key")
    ts = request.headers.get("x-walletflow-timestamp")
    sig = request.headers.get("x-walletflow-signature")
    if not key or not ts or not sig:
        raise ProblemError(E.SIGNATURE_MISSING, "X-Walletflow-Key, -Timestamp and "
                           "-Signature are required")
    candidates = await StoreRepository(session).credentials("widget", key)
    tenant = next((c for c in candidates if widget_valid(body, ts, sig, c["secret"])), None)
    if tenant is None:
        raise ProblemError(E.SIGNATURE_INVALID,
                           "unknown key, bad signature or timestamp outside ±300 s")
    if not await StoreRepository(session).first_use_of_signature(sig.strip().lower()):
        raise ProblemError(E.REPLAYED, "this signed call was already received")
    return tenant


WidgetTenant = Annotated[dict[str, Any], Depends(widget_tenant)]


@router.post("/v1/widget/purchases", status_code=201, openapi_extra=openapi_body(PurchaseReport),
             summary="The shop widget reports a purchase")
async def widget_purchase(tenant: WidgetTenant,
                          body: Annotated[PurchaseReport, Depends(json_body(PurchaseReport))],
                          session: DbSession, temporal: Temporal,
                          settings: AppSettings) -> JSONResponse:
    reporter = Reporter(session, temporal, settings, tenant["tenant_id"], tenant["slug"])
    status, answer = await reporter.purchase(_sale(body, "widget"))
    return JSONResponse(answer, status_code=status)


@router.post("/v1/widget/interactions", status_code=201,
             openapi_extra=openapi_body(InteractionReport),
             summary="The widget records a view, click or chat (for attribution)")
async def widget_interaction(tenant: WidgetTenant,
                             body: Annotated[InteractionReport,
                                             Depends(json_body(InteractionReport))],
                             session: DbSession) -> dict[str, Any]:
    if not (body.user_id or body.email or body.session_id):
        raise ProblemError(E.VALIDATION_ERROR, "give a user_id, an email or a session_id")
    interaction_id = await StoreRepository(session).record_interaction(
        tenant["tenant_id"], body.user_id, body.email, body.session_id, body.kind,
        when(body.occurred_at))
    return {"interaction_id": interaction_id}
