"""Request dependencies: the database session, the caller's identity, the parsed body."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine
from decimal import Decimal
from typing import Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ProblemError
from db.repositories import Principal, TenantRepository
from observability import bind

M = TypeVar("M", bound=BaseModel)


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request; the request owns the commit."""
    async with request.app.state.sessions() as session:
        yield session


async def raw_body(request: Request) -> bytes:
    """The raw request bytes, refusing oversized bodies before reading them all."""
    limit = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ProblemError(413, "payload_too_large", f"the body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ProblemError(413, "payload_too_large", f"the body exceeds {limit} bytes")
    return bytes(body)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_json(body: bytes) -> Any:
    """Strict JSON: numbers with a fraction or exponent become Decimal (exact), NaN and
    Infinity are refused."""
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProblemError(400, "malformed_json", f"the body is not valid JSON: {e}") from None


def json_body(model: type[M]) -> Callable[..., Coroutine[Any, Any, M]]:
    async def dependency(request: Request, body: bytes = Depends(raw_body)) -> M:
        ctype = request.headers.get("content-type", "")
        if ctype and "json" not in ctype:
            raise ProblemError(415, "unsupported_media_type", "send application/json")
        data = parse_json(body)
        if not isinstance(data, dict):
            raise ProblemError(422, "validation_error", "the body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as e:
            errors = [{"loc": list(x["loc"]), "msg": x["msg"]} for x in e.errors()]
            raise ProblemError(422, "validation_error", "the request is invalid",
                               errors=errors) from None

    dependency.__name__ = f"{model.__name__}_body"
    return dependency


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """Document a body that `json_body` parses (FastAPI cannot see it on its own)."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}


async def _principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ProblemError(401, "unauthorized", "send Authorization: Bearer <api key>")
    async with request.app.state.sessions() as session:
        principal = await TenantRepository(session).authenticate(key.strip())
    if principal is None:
        raise ProblemError(401, "unauthorized", "unknown or revoked API key")
    request.state.principal = principal
    bind(tenant_id=principal.tenant_id)
    return principal


def require(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def dependency(principal: Principal = Depends(_principal)) -> Principal:
        if scope not in principal.scopes:
            raise ProblemError(403, "insufficient_scope", f"this API key lacks the {scope!r} scope")
        return principal

    dependency.__name__ = f"require_{scope}"
    return dependency


client_principal = require("client")
any_principal = _principal  # any scope (e.g. a refund requested by a client or an admin key)
admin_principal = require("admin")
