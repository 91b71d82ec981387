"""Tenant settings an admin manages: the rewards policy (cashback rate, return window, minimum
attribution confidence, points and tiers)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from activities.purchases import rewards_policy
from api.deps import admin_principal, db_session, json_body, openapi_body
from api.errors import ProblemError
from api.schemas import RewardsSettings
from db.repositories import Principal

router = APIRouter(tags=["settings"])


async def _settings(session: AsyncSession, tenant_id: str) -> dict[str, Any]:
    return (await session.execute(text("SELECT settings FROM tenants WHERE id = :t FOR UPDATE"),
                                  {"t": tenant_id})).scalar_one() or {}


@router.get("/v1/settings/rewards", summary="The tenant's rewards policy (admin)")
async def get_rewards(principal: Principal = Depends(admin_principal),
                      session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    return dataclasses.asdict(rewards_policy(await _settings(session, principal.tenant_id)))


@router.put("/v1/settings/rewards", openapi_extra=openapi_body(RewardsSettings),
            summary="Change the rewards policy; applies to purchases reported from now on")
async def put_rewards(principal: Principal = Depends(admin_principal),
                      body: RewardsSettings = Depends(json_body(RewardsSettings)),
                      session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    settings = await _settings(session, principal.tenant_id)
    rewards = {**settings.get("rewards", {}), **body.model_dump(exclude_none=True)}
    thresholds = rewards.get("tier_thresholds")
    if thresholds:
        values = [thresholds.get(t) for t in ("silver", "gold", "platinum")]
        if None in values or values != sorted(values) or values[0] <= 0:
            raise ProblemError(422, "validation_error",
                               "tier thresholds must be positive and silver < gold < platinum")
    settings["rewards"] = rewards
    await session.execute(text("UPDATE tenants SET settings = CAST(:s AS jsonb) WHERE id = :t"),
                          {"s": json.dumps(settings), "t": principal.tenant_id})
    await session.commit()
    return dataclasses.asdict(rewards_policy(settings))
