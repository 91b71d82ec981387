"""Stores an admin connects: the shop widget (key and secret generated here), Shopify shops and
WooCommerce stores (their secrets are the ones the platform signs webhooks with). A secret is
answered once, when set; lists never show one. A deleted store's signed calls are refused."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import AdminPrincipal, DbSession, json_body, openapi_body
from api.errors import ProblemError
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, by_time, next_page, time_position
from api.schemas import StoreCredentialCreate, StoreRotate
from contracts.errors import ErrorCode as E
from db.stores import StoreRepository
from db.tenants import Principal

router = APIRouter(tags=["stores"])


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {"store_id": row["store_id"], "platform": row["platform"],
            "public_key": row["public_key"], "created_at": row["created_at"].isoformat()}


def _secret(platform: str, supplied: str | None) -> str:
    """The platform's secret as supplied (Shopify, WooCommerce), or a new one (the widget)."""
    if platform == "widget":
        if supplied is not None:
            raise ProblemError(E.VALIDATION_ERROR, "the widget's secret is generated, not sent")
        return secrets.token_urlsafe(32)
    if supplied is None:
        raise ProblemError(E.VALIDATION_ERROR,
                           f"secret (the one {platform} signs its webhooks with) is required")
    return supplied


@router.post("/v1/stores", status_code=201, openapi_extra=openapi_body(StoreCredentialCreate),
             summary="Connect the widget, a Shopify shop or a WooCommerce store (admin); the "
                     "answer holds the secret, once")
async def add_store(body: Annotated[StoreCredentialCreate,
                                    Depends(json_body(StoreCredentialCreate))],
                    principal: AdminPrincipal, session: DbSession) -> dict[str, Any]:
    public_key = body.public_key or (f"pk_{secrets.token_hex(12)}" if body.platform == "widget"
                                     else None)
    if public_key is None:
        raise ProblemError(E.VALIDATION_ERROR, "public_key (shop domain / URL) is required")
    secret = _secret(body.platform, body.secret)
    row = await StoreRepository(session).create(principal.tenant_id, body.platform, public_key,
                                                secret)
    if row is None:
        raise ProblemError(E.STORE_EXISTS, f"{body.platform} store {public_key!r} is already "
                           "connected (rotate its secret instead)")
    return _view(row) | {"secret": secret}


@router.get("/v1/stores", summary="The tenant's stores, oldest first, without secrets (admin)")
async def list_stores(principal: AdminPrincipal, session: DbSession, cursor: Cursor = None,
                      limit: Limit = DEFAULT_LIMIT) -> dict[str, Any]:
    rows = await StoreRepository(session).page(principal.tenant_id, time_position(cursor),
                                               limit + 1)
    page, next_cursor = next_page(rows, limit, lambda r: by_time(r["created_at"],
                                                                 r["store_id"]))
    return {"data": [_view(r) for r in page], "next_cursor": next_cursor}


async def _store(session: AsyncSession, principal: Principal, store_id: str) -> dict[str, Any]:
    row = await StoreRepository(session).store(principal.tenant_id, store_id)
    if row is None:
        raise ProblemError(E.STORE_NOT_FOUND, f"no store {store_id!r}")
    return row


@router.post("/v1/stores/{store_id}/rotate", openapi_extra=openapi_body(StoreRotate),
             summary="Replace the store's secret (admin): the platform's new one, or a new "
                     "widget secret answered once; the old secret is refused from now on")
async def rotate_store(store_id: str, body: Annotated[StoreRotate, Depends(json_body(StoreRotate))],
                       principal: AdminPrincipal, session: DbSession) -> dict[str, Any]:
    row = await _store(session, principal, store_id)
    secret = _secret(row["platform"], body.secret)
    await StoreRepository(session).replace_secret(principal.tenant_id, store_id, secret)
    return _view(row) | {"secret": secret}


@router.delete("/v1/stores/{store_id}",
               summary="Disconnect a store (admin): its signed calls are refused from now on")
async def delete_store(store_id: str, principal: AdminPrincipal,
                       session: DbSession) -> dict[str, Any]:
    if not await StoreRepository(session).delete(principal.tenant_id, store_id):
        raise ProblemError(E.STORE_NOT_FOUND, f"no store {store_id!r}")
    return {"id": store_id, "deleted": True}
