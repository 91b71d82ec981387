"""Opaque cursors for keyset pagination: every list answers ``{"data": [...], "next_cursor"}``
and takes ``limit`` and the ``cursor`` of the page before; a cursor that is not one of ours is
400 ``invalid_cursor``."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query

from api.errors import ProblemError
from contracts.errors import ErrorCode as E

T = TypeVar("T")
Limit = Annotated[int, Query(ge=1, le=200, description="at most this many items per page")]
Cursor = Annotated[str | None, Query(max_length=500,
                                     description="the previous page's next_cursor")]
DEFAULT_LIMIT = 50


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if not cursor:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise ProblemError(E.INVALID_CURSOR, "the cursor is malformed") from None


def _malformed() -> ProblemError:
    return ProblemError(E.INVALID_CURSOR, "the cursor is malformed")


def _storable(value: object) -> str:
    """An id as the database can compare it (no NUL, no lone surrogate)."""
    if not isinstance(value, str) or "\x00" in value:
        raise _malformed()
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _malformed() from None
    return value


def time_position(cursor: str | None) -> tuple[datetime, str] | None:
    """The (created_at, id) a cursor of ``next_page(..., by_time)`` names; None: the start."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
        raise _malformed()
    try:
        at = datetime.fromisoformat(value[0])
        if at.tzinfo is None:
            raise ValueError("naive")
        at = at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _malformed() from None
    return at, _storable(value[1])


def id_position(cursor: str | None) -> int | None:
    """The integer id a cursor of ``next_page(..., by_id)`` names; None: the start."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 1 << 63:
        raise _malformed()
    return value


def by_time(created_at: datetime, id_: str) -> list[str]:
    return [created_at.isoformat(), id_]


def next_page(rows: Sequence[T], limit: int, position: Callable[[T], Any]
              ) -> tuple[Sequence[T], str | None]:
    """The page (``limit`` of the ``limit + 1`` rows read) and the cursor of the next one."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(position(rows[limit - 1]))
