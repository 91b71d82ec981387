"""Tenant settings an admin manages: the rewards policy (cashback rate, return window, minimum
attribution confidence, points and tiers)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api.deps import AdminPrincipal, DbSession, json_body, openapi_body
from api.errors import ProblemError
from api.schemas import RewardsSettings
from contracts.errors import ErrorCode as E
from contracts.rewards import rewards_policy
from db.tenants import TenantSettings

router = APIRouter(tags=["settings"])


@router.get("/v1/settings/rewards", summary="The tenant's rewards policy (admin)")
async def get_rewards(principal: AdminPrincipal, session: DbSession) -> dict[str, Any]:
    settings = await TenantSettings(session).lock(principal.tenant_id)
    return dataclasses.asdict(rewards_policy(settings))


def _check_tiers(rewards: dict[str, Any]) -> None:
    thresholds = rewards.get("tier_thresholds")
    if thresholds:
        values = [thresholds.get(t) for t in ("silver", "gold", "platinum")]
        if None in values or values != sorted(values) or values[0] <= 0:
            raise ProblemError(E.VALIDATION_ERROR,
                               "tier thresholds must be positive and silver < gold < platinum")


@router.put("/v1/settings/rewards", openapi_extra=openapi_body(RewardsSettings),
            summary="Change the rewards policy; applies to purchases reported from now on")
async def put_rewards(principal: AdminPrincipal,
                      body: Annotated[RewardsSettings, Depends(json_body(RewardsSettings))],
                      session: DbSession) -> dict[str, Any]:
    tenant = TenantSettings(session)
    settings = await tenant.lock(principal.tenant_id)
    rewards = {**settings.get("rewards", {}), **body.model_dump(exclude_none=True)}
    _check_tiers(rewards)
    settings["rewards"] = rewards
    await tenant.replace(principal.tenant_id, settings)
    return dataclasses.asdict(rewards_policy(settings))
