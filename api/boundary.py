"""Text the database cannot store is refused at the boundary, before anything is written.

PostgreSQL's text cannot hold NUL (U+0000), and UTF-8 cannot encode a lone surrogate
(U+D800–U+DFFF, which a JSON ``\\ud800`` escape yields): either would fail deep in a query as a
500. ``TextGuard`` refuses them in the path and the query string of every request, and
``refuse_unencodable`` in every parsed JSON body (``api/deps.py`` ``parse_json``), keys
included, at any depth — always 422 ``validation_error`` problem+json naming where."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ProblemError, problem
from contracts.errors import ErrorCode as E

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """True when PostgreSQL can store ``text``: no NUL, no lone surrogate."""
    return _UNSTORABLE.search(text) is None


def _first_unstorable(value: Any, where: list[str | int]) -> list[str | int] | None:
    if isinstance(value, str):
        return None if storable(value) else where
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and not storable(key):
                return [*where, "(key)"]
            found = _first_unstorable(item, [*where, key])
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _first_unstorable(item, [*where, i])
            if found is not None:
                return found
    return None


def _refusal(loc: list[str | int]) -> tuple[str, list[dict[str, Any]]]:
    return ("the request holds text that cannot be stored (a NUL character or a lone "
            "surrogate)", [{"loc": loc, "msg": "NUL and lone surrogates are not allowed"}])


def refuse_unencodable(data: Any) -> None:
    """Raise 422 when any string in a parsed JSON document (keys too) cannot be stored."""
    loc = _first_unstorable(data, ["body"])
    if loc is not None:
        detail, errors = _refusal(loc)
        raise ProblemError(E.VALIDATION_ERROR, detail, errors=errors)


def _request_text(scope: Scope) -> list[str | int] | None:
    """Where the path or the query string (decoded as the router and endpoints will see
    them) holds unstorable text."""
    if not storable(scope.get("path", "")):
        return ["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if not storable(name) or not storable(value):
            return ["query", name if storable(name) else "(key)"]
    return None


class TextGuard:
    """Plain ASGI middleware: 422 for a path or query string the database could not store."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loc = _request_text(scope) if scope["type"] == "http" else None
        if loc is None:
            await self.app(scope, receive, send)
            return
        detail, errors = _refusal(loc)
        await problem(E.VALIDATION_ERROR, detail, errors=errors)(scope, receive, send)
