"""Errors as application/problem+json (RFC 9457): one table maps every ``ErrorCode`` to its
HTTP status and title, and one function builds every problem body. The handlers installed here
answer every exception: a dependency outage (PostgreSQL or Temporal unreachable) is 503 with
``Retry-After``, anything unexpected a logged 500 problem — never a text/plain error."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from temporalio.service import RPCError, RPCStatusCode

from contracts.errors import ErrorCode as E

PROBLEM_BASE = "https://walletflow.dev/problems/"
PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 2  # what a 503 (a dependency outage) tells the caller to wait
log = logging.getLogger(__name__)

# code → (HTTP status, title). The one place an outcome becomes an HTTP answer.
ERRORS: dict[E, tuple[int, str]] = {
    E.BAD_REQUEST: (400, "Bad request"),
    E.VALIDATION_ERROR: (422, "Invalid request"),
    E.MALFORMED_JSON: (400, "Malformed JSON"),
    E.MALFORMED_PAYLOAD: (400, "Malformed payload"),
    E.INVALID_AMOUNT: (422, "Invalid amount"),
    E.INVALID_CURRENCY: (422, "Invalid currency"),
    E.CURRENCY_MISMATCH: (422, "Currency mismatch"),
    E.INVALID_PERIOD: (422, "Invalid period"),
    E.INVALID_CURSOR: (400, "Invalid cursor"),
    E.UNKNOWN_PACKAGE: (422, "Unknown package"),
    E.UNKNOWN_GATEWAY: (422, "Unknown gateway"),
    E.URL_NOT_ALLOWED: (422, "URL not allowed"),
    E.PAYLOAD_TOO_LARGE: (413, "Payload too large"),
    E.UNSUPPORTED_MEDIA_TYPE: (415, "Unsupported media type"),
    E.METHOD_NOT_ALLOWED: (405, "Method not allowed"),
    E.IDEMPOTENCY_KEY_MISSING: (400, "Idempotency key missing"),
    E.IDEMPOTENCY_KEY_INVALID: (400, "Idempotency key invalid"),
    E.IDEMPOTENCY_KEY_REUSED: (422, "Idempotency key reused"),
    E.IDEMPOTENCY_IN_PROGRESS: (409, "Idempotency key in progress"),
    E.FLOW_EXISTS: (409, "Flow exists"),
    E.REPLAYED: (409, "Replayed"),
    E.UNAUTHORIZED: (401, "Unauthorized"),
    E.FORBIDDEN: (403, "Forbidden"),
    E.INSUFFICIENT_SCOPE: (403, "Insufficient scope"),
    E.SIGNATURE_MISSING: (401, "Signature missing"),
    E.SIGNATURE_INVALID: (401, "Signature invalid"),
    E.RATE_LIMITED: (429, "Too many requests"),
    E.NOT_FOUND: (404, "Not found"),
    E.USER_NOT_FOUND: (404, "User not found"),
    E.ORDER_NOT_FOUND: (404, "Order not found"),
    E.PURCHASE_NOT_FOUND: (404, "Purchase not found"),
    E.FLOW_NOT_FOUND: (404, "Flow not found"),
    E.CAMPAIGN_NOT_FOUND: (404, "Campaign not found"),
    E.CAMPAIGN_EXISTS: (409, "Campaign exists"),
    E.ENDPOINT_NOT_FOUND: (404, "Endpoint not found"),
    E.DELIVERY_NOT_FOUND: (404, "Delivery not found"),
    E.REFUND_NOT_FOUND: (404, "Refund not found"),
    E.WITHDRAWAL_NOT_FOUND: (404, "Withdrawal not found"),
    E.STORE_NOT_FOUND: (404, "Store not found"),
    E.STORE_EXISTS: (409, "Store exists"),
    E.INSUFFICIENT_FUNDS: (402, "Insufficient funds"),
    E.REFUND_EXCEEDS_PAID: (422, "Refund exceeds paid"),
    E.NOT_REFUNDABLE: (409, "Not refundable"),
    E.OVER_LIMIT: (422, "Over limit"),
    E.CAMPAIGN_CLOSED: (409, "Campaign closed"),
    E.EXCEEDS_TARGET: (422, "Exceeds target"),
    E.DECISION_REFUSED: (409, "Decision refused"),
    E.REQUESTER_CANNOT_APPROVE: (403, "Requester cannot approve"),
    E.REJECTED: (422, "Rejected"),
    E.EXPIRED: (422, "Expired"),
    E.GATEWAY_REFUSED: (422, "Gateway refused"),
    E.PAYMENT_FAILED: (422, "Payment failed"),
    E.PAYOUT_FAILED: (422, "Payout failed"),
    E.REFUND_FAILED: (422, "Refund failed"),
    E.LEDGER_CONFLICT: (409, "Ledger conflict"),
    E.ACCOUNT_MISSING: (422, "Account missing"),
    E.DELIVERY_FAILED: (502, "Delivery failed"),
    E.ENDPOINT_GONE: (410, "Endpoint gone"),
    E.ENDPOINT_DISABLED: (409, "Endpoint disabled"),
    E.TEMPORAL_UNAVAILABLE: (503, "Temporal unavailable"),
    E.DB_UNAVAILABLE: (503, "Database unavailable"),
    E.GATEWAY_UNAVAILABLE: (503, "Gateway unavailable"),
    E.LEDGER_RETRY: (503, "Ledger busy"),
    E.INTERNAL_ERROR: (500, "Internal error"),
}


def _entry(code: E) -> tuple[int, str]:
    # A code added to ErrorCode but not yet to the table still answers (tests/test_api_shape.py
    # keeps the table complete).
    return ERRORS.get(code) or (422, code.value.replace("_", " ").capitalize())


def http_status(code: E) -> int:
    return _entry(code)[0]


def problem_body(code: E, detail: str, status: int | None = None,
                 **extra: Any) -> dict[str, Any]:
    """The one problem+json body. ``status`` overrides the table only where a route's contract
    says otherwise (Stripe expects 400 for a bad signature)."""
    default, title = _entry(code)
    return {"type": PROBLEM_BASE + code.value, "title": title, "status": status or default,
            "detail": detail, "code": code.value, **extra}


class ProblemError(Exception):
    """Raised anywhere in a request: answered as a problem+json body (``headers`` added)."""

    def __init__(self, code: E, detail: str, *, status: int | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.code, self.detail, self.extra = code, detail, extra
        self.status = status or http_status(code)
        self.headers = headers or {}


def problem(code: E, detail: str, status: int | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """The problem answer; every 401 names its scheme (``WWW-Authenticate``) and every 503 says
    when to retry (``Retry-After``)."""
    body = problem_body(code, detail, status, **extra)
    headers = dict(headers or {})
    if body["status"] == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="walletflow"')
    if body["status"] == 503:
        headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON,
                        headers=headers)


_HTTP_CODES = {400: E.BAD_REQUEST, 401: E.UNAUTHORIZED, 403: E.FORBIDDEN, 404: E.NOT_FOUND,
               405: E.METHOD_NOT_ALLOWED, 413: E.PAYLOAD_TOO_LARGE,
               415: E.UNSUPPORTED_MEDIA_TYPE, 422: E.VALIDATION_ERROR}
# PostgreSQL unreachable, restarting or shutting down: the connection, not the statement, failed.
_DB_DOWN = (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError, sa.TimeoutError,
            asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
            asyncpg.exceptions.OperatorInterventionError, OSError)
_TEMPORAL_DOWN = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED,
                  RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.CANCELLED}


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        e = pending.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        pending += [getattr(e, "orig", None), e.__cause__]
    return seen


def outage(exc: BaseException) -> E | None:
    """The dependency an exception says is unavailable (db_unavailable, temporal_unavailable),
    or None: a data error (a constraint violation, bad SQL) is not an outage."""
    for e in _causes(exc):
        if isinstance(e, RPCError):
            return E.TEMPORAL_UNAVAILABLE if e.status in _TEMPORAL_DOWN else None
        if isinstance(e, RuntimeError) and str(e).startswith("Failed client connect"):
            return E.TEMPORAL_UNAVAILABLE
        if isinstance(e, sa.DBAPIError) and e.connection_invalidated:
            return E.DB_UNAVAILABLE
        if isinstance(e, _DB_DOWN):
            return E.DB_UNAVAILABLE
    return None


_OUTAGE_DETAIL = {E.DB_UNAVAILABLE: "the database is unavailable; try again shortly",
                  E.TEMPORAL_UNAVAILABLE: "the workflow service is unavailable; try again shortly"}


def _routes(routes: list[Any]) -> list[Any]:
    """Every endpoint route, through included routers."""
    flat: list[Any] = []
    for route in routes:
        inner = getattr(route, "routes", None) or getattr(
            getattr(route, "original_router", None), "routes", None)
        flat += _routes(inner) if inner else [route]
    return flat


def _allowed(request: Request) -> str:
    """The methods the request's path answers (for a 405's ``Allow``)."""
    methods: set[str] = set()
    for route in _routes(request.app.router.routes):
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.code, exc.detail, exc.status, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return problem(E.VALIDATION_ERROR, "the request is invalid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, E.BAD_REQUEST)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(request) or headers.get("Allow", "")
        return problem(code, str(exc.detail), exc.status_code, headers)

    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        code = outage(exc)
        if code is not None:
            log.warning("%s %s: %s (%s)", request.method, request.url.path, code.value,
                        type(exc).__name__)
            return problem(code, _OUTAGE_DETAIL[code])
        log.error("unexpected error in %s %s", request.method, request.url.path,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return problem(E.INTERNAL_ERROR, "an unexpected error occurred; it has been logged")

    # Outages are answered where they are raised (no traceback); ``Exception`` is the last
    # resort (Starlette's outermost error middleware), so nothing answers text/plain.
    for kind in (sa.SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError,
                 RPCError, RuntimeError, Exception):
        app.add_exception_handler(kind, _unexpected)
