"""Campaigns and donations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.common import WorkflowIDConflictPolicy

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
from api.flows import TEMPORAL_TIMEOUT
from api.flowstart import Answer, FlowStart, FlowStarter, commit_before_start, refusal, start_flow
from api.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    by_time,
    id_position,
    next_page,
    time_position,
)
from api.schemas import CampaignCreate, DonationCreate, money
from api.users import known_user
from contracts.donation import CampaignInput, DonationInput, DonationResult
from contracts.errors import ErrorCode as E
from contracts.money import Money, format_amount
from db.campaigns import CampaignQueries
from db.tenants import Principal
from workflows.campaign import CampaignWorkflow
from workflows.console import start_options
from workflows.donation import DonationWorkflow

router = APIRouter(tags=["campaigns"])


def _view(c: dict[str, Any]) -> dict[str, Any]:
    cur = c["currency"]
    return {"campaign_id": c["campaign_id"], "name": c["name"], "currency": cur,
            "target": format_amount(c["target"], cur), "capped": c["capped"],
            "ends_at": c["ends_at"].isoformat(), "status": c["status"],
            "closed_reason": c["closed_reason"], "raised": format_amount(c["raised"], cur),
            "donors": c["donors"], "percent_of_target": f"{100 * c['raised'] / c['target']:.1f}"}


async def _campaign(session: AsyncSession, principal: Principal,
                    campaign_id: str) -> dict[str, Any]:
    row = await CampaignQueries(session).one_with_progress(principal.tenant_id, campaign_id)
    if row is None:
        raise ProblemError(E.CAMPAIGN_NOT_FOUND, f"no campaign {campaign_id!r}")
    return _view(row)


@router.post("/v1/campaigns", status_code=201, openapi_extra=openapi_body(CampaignCreate),
             summary="Create a campaign (admin)")
async def create_campaign(principal: AdminPrincipal,
                          body: Annotated[CampaignCreate, Depends(json_body(CampaignCreate))],
                          session: DbSession, temporal: Temporal,
                          settings: AppSettings) -> dict[str, Any]:
    target = money(body.target, body.currency)
    if body.ends_at.tzinfo is None or body.ends_at <= datetime.now(UTC):
        raise ProblemError(E.VALIDATION_ERROR, "ends_at must be a future time with a zone")
    flow_id = f"{principal.tenant_slug}:campaign:{body.campaign_id}"
    if not await CampaignQueries(session).create(
            principal.tenant_id, body.campaign_id, body.name, body.currency, target.amount,
            body.capped, body.ends_at, flow_id):
        raise ProblemError(E.CAMPAIGN_EXISTS, f"campaign {body.campaign_id!r} exists")
    await commit_before_start(session)
    inp = CampaignInput(principal.tenant_id, body.campaign_id, flow_id, body.ends_at.isoformat())
    await temporal.start_workflow(
        CampaignWorkflow.run, inp, id=flow_id, task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, rpc_timeout=TEMPORAL_TIMEOUT,
        **start_options("campaign", principal.tenant_slug, inp, via=f"`{principal.actor}`"))
    return await _campaign(session, principal, body.campaign_id)


@router.get("/v1/campaigns", summary="Campaigns with their progress, newest first")
async def list_campaigns(principal: AnyPrincipal, session: DbSession, cursor: Cursor = None,
                         limit: Limit = DEFAULT_LIMIT) -> dict[str, Any]:
    rows = await CampaignQueries(session).with_progress(principal.tenant_id,
                                                        time_position(cursor), limit + 1)
    page, next_cursor = next_page(rows, limit, lambda r: by_time(r["created_at"],
                                                                 r["campaign_id"]))
    return {"data": [_view(r) for r in page], "next_cursor": next_cursor}


@router.get("/v1/campaigns/{campaign_id}", summary="A campaign and its progress")
async def get_campaign(campaign_id: str, principal: AnyPrincipal,
                       session: DbSession) -> dict[str, Any]:
    return await _campaign(session, principal, campaign_id)


async def _donation(session: AsyncSession, principal: Principal, campaign_id: str,
                    body: DonationCreate) -> tuple[Money, dict[str, Any]]:
    """The donation's amount (in the campaign's currency, from a known donor) and the
    campaign."""
    campaign = await _campaign(session, principal, campaign_id)
    amount = money(body.amount, body.currency)
    if body.currency != campaign["currency"]:
        raise ProblemError(E.CURRENCY_MISMATCH, f"the campaign collects {campaign['currency']}")
    await known_user(session, principal, body.user_id)
    return amount, campaign


def _open(campaign: dict[str, Any]) -> None:
    if campaign["status"] != "open":
        raise ProblemError(E.CAMPAIGN_CLOSED,
                           f"the campaign is closed ({campaign['closed_reason']})")


def _donated(flow_id: str, campaign_id: str, amount: Money, result: DonationResult) -> Answer:
    if result.state != "completed":
        return refusal(result.error_code, result.error, E.EXCEEDS_TARGET,
                       flow_id=flow_id)
    return Answer(201, {"flow_id": flow_id, "state": "completed", "campaign_id": campaign_id,
                        "amount": format_amount(amount.amount, amount.currency),
                        "currency": amount.currency, "points_earned": str(result.points),
                        "campaign_closed": result.campaign_closed})


@router.post("/v1/campaigns/{campaign_id}/donations", status_code=201,
             openapi_extra=openapi_body(DonationCreate),
             summary="Donate money or points to a campaign")
async def donate(campaign_id: str, request: Request, principal: ClientPrincipal,
                 body: Annotated[DonationCreate, Depends(json_body(DonationCreate))],
                 session: DbSession, temporal: Temporal, settings: AppSettings) -> JSONResponse:
    amount, campaign = await _donation(session, principal, campaign_id, body)
    campaign_flow = f"{principal.tenant_slug}:campaign:{campaign_id}"

    async def answer(flow_id: str, result: DonationResult) -> Answer:
        return _donated(flow_id, campaign_id, amount, result)

    async def validate() -> None:
        _open(campaign)

    return await start_flow(FlowStarter(request, session, principal, temporal, settings), FlowStart(
        kind="donation", user_id=body.user_id,
        request={"campaign_id": campaign_id, **body.model_dump()},
        workflow=DonationWorkflow.run, answer=answer, validate=validate,
        make_input=lambda flow_id: DonationInput(principal.tenant_id, flow_id, campaign_id,
                                                 campaign_flow, body.user_id, amount),
        view=lambda flow_id, state: {"flow_id": flow_id, "state": state}))


@router.get("/v1/users/{user_id}/donations", summary="A user's donations, newest first")
async def user_donations(user_id: str, principal: ClientPrincipal, session: DbSession,
                         cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT) -> dict[str, Any]:
    await known_user(session, principal, user_id)
    rows = await CampaignQueries(session).donations_of(principal.tenant_id, user_id,
                                                       id_position(cursor), limit + 1)
    page, next_cursor = next_page(rows, limit, lambda r: r["id"])
    return {"data": [{"flow_id": r["flow_id"], "campaign_id": r["campaign_id"],
                      "amount": format_amount(r["amount"], r["currency"]),
                      "currency": r["currency"], "created_at": r["created_at"].isoformat()}
                     for r in page], "next_cursor": next_cursor}
