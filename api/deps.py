"""Request dependencies, as typed ``Annotated`` aliases every endpoint declares: the database
session (committed or rolled back here, once), the Temporal client, the settings, the caller's
identity (rate limited per API key: ``api/ratelimit.py``) and the parsed body. Only this module
(and ``api/metrics.py`` for its registry) reads ``app.state``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.boundary import refuse_unencodable
from api.errors import ProblemError
from api.ratelimit import KeyRateLimiter, enforce
from contracts.errors import ErrorCode as E
from db.tenants import Principal, TenantRepository
from observability import bind
from settings import Settings

M = TypeVar("M", bound=BaseModel)


# Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in its thread
# pool, a thread hop per dependency per request (~10 % of the API's CPU under the mixed load).
def _session_factory(request: Request) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return factory


def _autocommit_engine(request: Request) -> AsyncEngine:
    """The engine with ``isolation_level="AUTOCOMMIT"``: a lone statement is its own
    transaction, one round trip without BEGIN and COMMIT/ROLLBACK (the API key lookup)."""
    engine: AsyncEngine = request.app.state.autocommit
    return engine


async def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    return _session_factory(request)


async def _autocommit(request: Request) -> AsyncEngine:
    return _autocommit_engine(request)


async def _temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


def _rate_limiter(request: Request) -> KeyRateLimiter | None:
    limiter: KeyRateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    return limiter


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, and the one place it ends: committed when the endpoint returns,
    rolled back when anything raises — before the response is sent (``scope="function"``), so
    an answer never reports what was not committed and a refused request writes nothing.
    A request that starts a workflow commits once earlier, before the start
    (``api/flowstart.py`` ``commit_before_start``). A GET only reads (no GET route writes):
    its session runs each statement on its own (autocommit), without the BEGIN and COMMIT
    round trips; under READ COMMITTED every statement has its own snapshot anyway, and a read
    that needs one snapshot still asks for its own transaction (``api/analytics.py``)."""
    reads = request.method in ("GET", "HEAD")
    factory = _session_factory(request)
    async with (factory(bind=_autocommit_engine(request)) if reads else factory()) as session:
        try:
            yield session
        except Exception:
            with contextlib.suppress(Exception):  # a lost connection: the answer is the cause
                await session.rollback()
            raise
        await session.commit()


Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
Autocommit = Annotated[AsyncEngine, Depends(_autocommit)]
DbSession = Annotated[AsyncSession, Depends(db_session, scope="function")]
Temporal = Annotated[Client, Depends(_temporal)]
AppSettings = Annotated[Settings, Depends(_settings)]


async def raw_body(request: Request, settings: AppSettings) -> bytes:
    """The raw request bytes, refusing oversized bodies before reading them all."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ProblemError(E.PAYLOAD_TOO_LARGE, f"the body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ProblemError(E.PAYLOAD_TOO_LARGE, f"the body exceeds {limit} bytes")
    return bytes(body)


RawBody = Annotated[bytes, Depends(raw_body)]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_json(body: bytes) -> Any:
    """Strict JSON: numbers with a fraction or exponent become Decimal (exact), NaN and
    Infinity are refused, and so is text the database cannot store (NUL, lone surrogates:
    ``api/boundary.py``)."""
    try:
        data = json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ProblemError(E.MALFORMED_JSON, f"the body is not valid JSON: {e}") from None
    refuse_unencodable(data)
    return data


def json_body(model: type[M]) -> Callable[..., Coroutine[Any, Any, M]]:
    async def dependency(request: Request, body: RawBody) -> M:
        ctype = request.headers.get("content-type", "")
        if ctype and "json" not in ctype:
            raise ProblemError(E.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        data = parse_json(body)
        if not isinstance(data, dict):
            raise ProblemError(E.VALIDATION_ERROR, "the body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as e:
            errors = [{"loc": list(x["loc"]), "msg": x["msg"]} for x in e.errors()]
            raise ProblemError(E.VALIDATION_ERROR, "the request is invalid",
                               errors=errors) from None

    dependency.__name__ = f"{model.__name__}_body"
    return dependency


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """Document a body that `json_body` parses (FastAPI cannot see it on its own)."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}


async def _principal(request: Request, autocommit: Autocommit) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ProblemError(E.UNAUTHORIZED, "send Authorization: Bearer <api key>")
    # One statement on its own pooled connection, returned at once (as the session before
    # it was); read afresh on every request, so a revoked key is refused at once.
    async with autocommit.connect() as conn:
        principal = await TenantRepository(conn).authenticate(key.strip())
    if principal is None:
        raise ProblemError(E.UNAUTHORIZED, "unknown or revoked API key")
    request.state.principal = principal
    bind(tenant_id=principal.tenant_id)
    await enforce(_rate_limiter(request), request, principal)  # 429 over the key's limit
    return principal


def require(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if scope not in principal.scopes:
            raise ProblemError(E.INSUFFICIENT_SCOPE, f"this API key lacks the {scope!r} scope")
        return principal

    dependency.__name__ = f"require_{scope}"
    return dependency


ClientPrincipal = Annotated[Principal, Depends(require("client"))]
AdminPrincipal = Annotated[Principal, Depends(require("admin"))]
# Any scope (e.g. a refund requested by a client or an admin key).
AnyPrincipal = Annotated[Principal, Depends(_principal)]
