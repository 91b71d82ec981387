"""Users of a tenant (the wallet owners)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import client_principal, db_session, json_body, openapi_body
from api.schemas import UserCreate
from db.repositories import Principal, UserRepository

router = APIRouter(tags=["users"])


@router.post("/v1/users", status_code=201, openapi_extra=openapi_body(UserCreate),
             summary="Register a user (idempotent: an existing user answers 200)")
async def create_user(
    principal: Principal = Depends(client_principal),
    body: UserCreate = Depends(json_body(UserCreate)),
    session: AsyncSession = Depends(db_session),
) -> JSONResponse:
    created = await UserRepository(session).create(principal.tenant_id, body.user_id, body.email)
    await session.commit()
    user = await UserRepository(session).get(principal.tenant_id, body.user_id)
    assert user is not None
    return JSONResponse({"user_id": user["user_id"], "email": user["email"],
                         "created_at": user["created_at"].isoformat()},
                        status_code=201 if created else 200)
