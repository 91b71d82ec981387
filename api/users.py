"""Users of a tenant (the wallet owners)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ClientPrincipal, DbSession, json_body, openapi_body
from api.errors import ProblemError
from api.schemas import UserCreate
from contracts.errors import ErrorCode as E
from contracts.money import format_amount
from contracts.rewards import TIERS, RewardsPolicy, rewards_policy
from db.ledger import LedgerRepository
from db.tenants import Principal
from db.users import UserRepository

router = APIRouter(tags=["users"])


async def known_user(session: AsyncSession, principal: Principal,
                     user_id: str) -> dict[str, Any]:
    """404 unless ``user_id`` is a user of the caller's tenant."""
    user = await UserRepository(session).get(principal.tenant_id, user_id)
    if user is None:
        raise ProblemError(E.USER_NOT_FOUND, f"no user {user_id!r} in this tenant")
    return user


@router.post("/v1/users", status_code=201, openapi_extra=openapi_body(UserCreate),
             summary="Register a user (idempotent: an existing user answers 200)")
async def create_user(principal: ClientPrincipal,
                      body: Annotated[UserCreate, Depends(json_body(UserCreate))],
                      session: DbSession) -> JSONResponse:
    users = UserRepository(session)
    created = await users.create(principal.tenant_id, body.user_id, body.email)
    user = await users.get(principal.tenant_id, body.user_id)
    assert user is not None
    return JSONResponse({"user_id": user["user_id"], "email": user["email"],
                         "created_at": user["created_at"].isoformat()},
                        status_code=201 if created else 200)


def _points(value: int) -> str:
    return format_amount(value, "PTS")


def tier_view(policy: RewardsPolicy, lifetime_points: int) -> dict[str, Any]:
    """The tier the user's lifetime points reach and the next one (None at the top)."""
    tier = policy.tier_for(lifetime_points)
    above = [(name, policy.tier_thresholds[name]) for name in TIERS[TIERS.index(tier) + 1:]
             if name in policy.tier_thresholds and policy.tier_thresholds[name] > lifetime_points]
    next_tier = ({"name": above[0][0], "threshold": _points(above[0][1]),
                  "points_needed": _points(above[0][1] - lifetime_points)} if above else None)
    return {"tier": tier, "lifetime_points": _points(lifetime_points), "next_tier": next_tier}


@router.get("/v1/users/{user_id}", summary="A user: tier, lifetime points and the next tier")
async def get_user(user_id: str, principal: ClientPrincipal,
                   session: DbSession) -> dict[str, Any]:
    user = await known_user(session, principal, user_id)
    points = await LedgerRepository(session).lifetime_points(principal.tenant_id, user_id)
    return {"user_id": user["user_id"], "email": user["email"],
            "created_at": user["created_at"].isoformat()} | tier_view(
        rewards_policy(principal.settings), points)
