"""Campaigns and donations."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from api.deps import (
    admin_principal,
    any_principal,
    client_principal,
    db_session,
    json_body,
    openapi_body,
)
from api.errors import PROBLEM_BASE, ProblemError
from api.flowstart import start_once
from api.schemas import CampaignCreate, DonationCreate
from contracts.donation import CampaignInput, DonationInput, DonationResult
from contracts.money import Money, MoneyError, format_amount, parse_amount
from db.repositories import Principal, UserRepository
from workflows.campaign import CampaignWorkflow
from workflows.donation import DonationWorkflow

router = APIRouter(tags=["campaigns"])


def _money(amount: str, currency: str) -> Money:
    try:
        return Money(parse_amount(amount, currency), currency)
    except MoneyError as e:
        raise ProblemError(422, "invalid_amount", str(e)) from None


_PROGRESS = (
    "SELECT c.*, coalesce(a.posted, 0) AS raised, "
    "(SELECT count(DISTINCT t.debit_account_id) FROM transfers t WHERE t.credit_account_id = a.id "
    "AND t.kind = 'donation') AS donors FROM campaigns c LEFT JOIN accounts a ON "
    "a.tenant_id = c.tenant_id AND a.kind = 'campaign' AND a.owner_id = c.campaign_id "
    "AND a.currency = c.currency WHERE c.tenant_id = :t")


def _view(c: Any) -> dict[str, Any]:
    cur = c["currency"]
    return {"campaign_id": c["campaign_id"], "name": c["name"], "currency": cur,
            "target": format_amount(c["target"], cur), "capped": c["capped"],
            "ends_at": c["ends_at"].isoformat(), "status": c["status"],
            "closed_reason": c["closed_reason"], "raised": format_amount(c["raised"], cur),
            "donors": c["donors"], "percent_of_target": f"{100 * c['raised'] / c['target']:.1f}"}


@router.post("/v1/campaigns", status_code=201, openapi_extra=openapi_body(CampaignCreate),
             summary="Create a campaign (admin)")
async def create_campaign(request: Request, principal: Principal = Depends(admin_principal),
                          body: CampaignCreate = Depends(json_body(CampaignCreate)),
                          session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    target = _money(body.target, body.currency)
    if body.ends_at.tzinfo is None or body.ends_at <= datetime.now(UTC):
        raise ProblemError(422, "validation_error", "ends_at must be a future time with a zone")
    flow_id = f"{principal.tenant_slug}:campaign:{body.campaign_id}"
    created = (await session.execute(text(
        "INSERT INTO campaigns (tenant_id, campaign_id, name, currency, target, capped, ends_at, "
        "flow_id) VALUES (:t, :c, :n, :cur, :tg, :cap, :e, :f) ON CONFLICT DO NOTHING "
        "RETURNING campaign_id"),
        {"t": principal.tenant_id, "c": body.campaign_id, "n": body.name, "cur": body.currency,
         "tg": target.amount, "cap": body.capped, "e": body.ends_at, "f": flow_id})).first()
    if created is None:
        raise ProblemError(409, "campaign_exists", f"campaign {body.campaign_id!r} exists")
    await session.commit()
    await request.app.state.temporal.start_workflow(
        CampaignWorkflow.run, CampaignInput(principal.tenant_id, body.campaign_id, flow_id,
                                            body.ends_at.isoformat()),
        id=flow_id, task_queue=request.app.state.settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    return await get_campaign(body.campaign_id, principal, session)


@router.get("/v1/campaigns", summary="Campaigns with their progress")
async def list_campaigns(principal: Principal = Depends(any_principal),
                         session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    rows = await session.execute(text(_PROGRESS + " ORDER BY c.created_at DESC LIMIT 200"),
                                 {"t": principal.tenant_id})
    return {"data": [_view(r._mapping) for r in rows]}


@router.get("/v1/campaigns/{campaign_id}", summary="A campaign and its progress")
async def get_campaign(campaign_id: str, principal: Principal = Depends(any_principal),
                       session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    row = (await session.execute(text(_PROGRESS + " AND c.campaign_id = :c"),
                                 {"t": principal.tenant_id, "c": campaign_id})).first()
    if row is None:
        raise ProblemError(404, "campaign_not_found", f"no campaign {campaign_id!r}")
    return _view(row._mapping)


@router.post("/v1/campaigns/{campaign_id}/donations", status_code=201,
             openapi_extra=openapi_body(DonationCreate),
             summary="Donate money or points to a campaign")
async def donate(campaign_id: str, request: Request,
                 principal: Principal = Depends(client_principal),
                 body: DonationCreate = Depends(json_body(DonationCreate)),
                 session: AsyncSession = Depends(db_session)) -> JSONResponse:
    campaign = await get_campaign(campaign_id, principal, session)
    amount = _money(body.amount, body.currency)
    if body.currency != campaign["currency"]:
        raise ProblemError(422, "currency_mismatch",
                           f"the campaign collects {campaign['currency']}")
    if await UserRepository(session).get(principal.tenant_id, body.user_id) is None:
        raise ProblemError(404, "user_not_found", f"no user {body.user_id!r} in this tenant")
    if campaign["status"] != "open":
        raise ProblemError(409, "campaign_closed", f"the campaign is closed "
                           f"({campaign['closed_reason']})")
    campaign_flow = f"{principal.tenant_slug}:campaign:{campaign_id}"

    async def start(flow_id: str) -> tuple[int, dict[str, Any], bool]:
        handle = await request.app.state.temporal.start_workflow(
            DonationWorkflow.run, DonationInput(principal.tenant_id, flow_id, campaign_id,
                                                campaign_flow, body.user_id, amount),
            id=flow_id, task_queue=request.app.state.settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
        try:
            result: DonationResult = await asyncio.wait_for(handle.result(), 20)
        except TimeoutError:
            return 202, {"flow_id": flow_id, "state": "processing"}, False
        if result.state != "completed":
            code = (result.error or "refused").split(":", 1)[0]
            status = {"insufficient_funds": 402, "campaign_closed": 409}.get(code, 422)
            return status, {"type": PROBLEM_BASE + code, "title": code.replace("_", " "),
                            "status": status, "code": code, "detail": result.error,
                            "flow_id": flow_id}, True
        return 201, {"flow_id": flow_id, "state": "completed", "campaign_id": campaign_id,
                     "amount": format_amount(amount.amount, amount.currency),
                     "currency": amount.currency, "points_earned": str(result.points),
                     "campaign_closed": result.campaign_closed}, True

    return await start_once(request, session, principal, "donation", body.user_id,
                            {"campaign_id": campaign_id, **body.model_dump()}, start)


@router.get("/v1/users/{user_id}/donations", summary="A user's donations")
async def user_donations(user_id: str, principal: Principal = Depends(client_principal),
                         session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    rows = await session.execute(text(
        "SELECT t.flow_id, t.amount, t.currency, t.created_at, c.owner_id AS campaign_id "
        "FROM transfers t JOIN accounts d ON d.id = t.debit_account_id "
        "JOIN accounts c ON c.id = t.credit_account_id WHERE t.tenant_id = :t "
        "AND t.kind = 'donation' AND d.owner_id = :u ORDER BY t.id DESC LIMIT 200"),
        {"t": principal.tenant_id, "u": user_id})
    return {"data": [{"flow_id": r.flow_id, "campaign_id": r.campaign_id,
                      "amount": format_amount(r.amount, r.currency), "currency": r.currency,
                      "created_at": r.created_at.isoformat()} for r in rows]}
