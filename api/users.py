"""Users of a tenant (the wallet owners)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ClientPrincipal, DbSession, json_body, openapi_body
from api.errors import ProblemError
from api.schemas import UserCreate
from contracts.errors import ErrorCode as E
from db.tenants import Principal
from db.users import UserRepository

router = APIRouter(tags=["users"])


async def known_user(session: AsyncSession, principal: Principal, user_id: str) -> None:
    """404 unless ``user_id`` is a user of the caller's tenant."""
    if await UserRepository(session).get(principal.tenant_id, user_id) is None:
        raise ProblemError(E.USER_NOT_FOUND, f"no user {user_id!r} in this tenant")


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
