"""Tenant settings an admin manages, one group per route (GET reads it back, PUT replaces the
fields it names): rewards (cashback, points, tiers), refunds (approval thresholds), withdrawals
(limits, two-admin threshold, approval window), events (development mode). The rules are
``contracts/settings.py``'s (the CLI keeps the same); every change is audited
(``GET /v1/settings/audit``) and applies to the flows started from then on."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api.deps import AdminPrincipal, AppSettings, DbSession, json_body, openapi_body
from api.errors import ProblemError
from api.pagination import id_position, next_page
from api.schemas import RewardsSettings
from api.settings_models import (
    EventSettings,
    PaymentSettings,
    RefundSettings,
    WithdrawalSettings,
)
from contracts.errors import ErrorCode as E
from contracts.settings import SettingsError
from db.settings_audit import SettingsAudit
from db.tenants import Principal, TenantSettings
from settings import Settings

router = APIRouter(tags=["settings"])

_SUMMARIES = {
    "rewards": ("The tenant's rewards policy (admin)",
                "Change the rewards policy; applies to purchases reported from now on"),
    "refunds": ("Refund approval thresholds (admin)",
                "Change the refund approval thresholds; applies to refunds requested from now on"),
    "withdrawals": ("Withdrawal limits and approvals (admin)",
                    "Change the withdrawal limits and approvals; applies to withdrawals "
                    "requested from now on"),
    "events": ("Outbound webhook settings (admin)",
               "Change the outbound webhook settings (development mode)"),
    "payments": ("Payment settings: the default gateway (admin)",
                 "Change the payment settings; applies to payments started from now on"),
}


async def change(session: DbSession, principal: Principal, settings: Settings, group: str,
                 body: BaseModel) -> dict[str, Any]:
    """Apply the fields the body names (null: back to the default), audited as the key's
    holder; the group as it applies now. 422 when the rules refuse it (nothing changes)."""
    gateway = getattr(body, "gateway", None) if group == "payments" else None
    if gateway is not None and gateway not in settings.payment_gateways:
        raise ProblemError(E.UNKNOWN_GATEWAY, f"gateway {gateway!r} is not configured here: "
                           f"one of {', '.join(settings.payment_gateways)}")
    try:
        return await TenantSettings(session).change(
            principal.tenant_id, group, body.model_dump(exclude_unset=True), principal.actor,
            principal.key_id, production=settings.walletflow_env == "production")
    except SettingsError as e:
        raise ProblemError(E.VALIDATION_ERROR, str(e)) from None


def _add_group(group: str, model: type[BaseModel]) -> None:
    """GET and PUT /v1/settings/<group>."""
    read, write = _SUMMARIES[group]

    async def get_group(principal: AdminPrincipal, session: DbSession) -> dict[str, Any]:
        return await TenantSettings(session).show(principal.tenant_id, group)

    # (the body's model is this group's: a default, as the annotation cannot name a local)
    async def put_group(principal: AdminPrincipal, session: DbSession, settings: AppSettings,
                        body: BaseModel = Depends(json_body(model))) -> dict[str, Any]:
        return await change(session, principal, settings, group, body)

    get_group.__name__, put_group.__name__ = f"get_{group}", f"put_{group}"
    router.add_api_route(f"/v1/settings/{group}", get_group, methods=["GET"], summary=read)
    router.add_api_route(f"/v1/settings/{group}", put_group, methods=["PUT"], summary=write,
                         openapi_extra=openapi_body(model))


for _group, _model in (("rewards", RewardsSettings), ("refunds", RefundSettings),
                       ("withdrawals", WithdrawalSettings), ("events", EventSettings),
                       ("payments", PaymentSettings)):
    _add_group(_group, _model)


@router.get("/v1/settings/audit", summary="Changes to the tenant's settings, newest first (admin)")
async def list_changes(principal: AdminPrincipal, session: DbSession,
                       group: Literal["rewards", "refunds", "withdrawals", "events",
                                      "payments"] | None = None,
                       cursor: str | None = None,
                       limit: int = Query(50, ge=1, le=200)) -> dict[str, Any]:
    rows = await SettingsAudit(session).newest_first(principal.tenant_id, id_position(cursor),
                                                     limit + 1, group)
    page, next_cursor = next_page(rows, limit, lambda r: r["id"])
    data = [{"id": str(r["id"]), "group": r["setting_group"], "actor": r["actor"],
             "key_id": r["key_id"], "old": r["old_value"], "new": r["new_value"],
             "changed_at": r["changed_at"].isoformat()} for r in page]
    return {"data": data, "next_cursor": next_cursor}
