"""Stripe's list endpoints (``GET /v1/payment_intents``, ``/v1/refunds``, ``/v1/payouts``):
newest first, ``limit`` (1–100, default 10), cursor pagination with ``starting_after`` /
``ending_before`` (an object id), ``created[gt|gte|lt|lte]`` (or ``created=<ts>``) filters,
and the list object's wire shape (``object: list``, ``data``, ``has_more``, ``url``) that the
official SDK's auto-pagination reads. Refunds also filter by ``payment_intent``."""

from __future__ import annotations

import copy
from typing import Any

from stripe_standin.wire import JSON, StandinError

_BOUNDS = {"gt": lambda c, v: c > v, "gte": lambda c, v: c >= v,
           "lt": lambda c, v: c < v, "lte": lambda c, v: c <= v}


def _int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StandinError.invalid("Invalid integer: " + str(value), code="parameter_invalid",
                                   param=param) from None


def _created_filter(params: JSON) -> list[tuple[str, int]]:
    created = params.get("created")
    if created is None:
        return []
    if not isinstance(created, dict):
        return [("gte", _int(created, "created")), ("lte", _int(created, "created"))]
    unknown = set(created) - set(_BOUNDS)
    if unknown:
        raise StandinError.invalid(f"Received unknown parameter: created[{sorted(unknown)[0]}]",
                                   code="parameter_unknown", param="created")
    return [(op, _int(v, f"created[{op}]")) for op, v in created.items()]


def _limit(params: JSON) -> int:
    limit = _int(params.get("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise StandinError.invalid("Invalid limit: must be between 1 and 100",
                                   code="parameter_invalid", param="limit")
    return limit


def _window(items: list[JSON], params: JSON, kind: str) -> tuple[list[JSON], bool]:
    """The page after ``starting_after`` (or before ``ending_before``) and whether more follow
    in that direction."""
    limit = _limit(params)
    ids = [item["id"] for item in items]
    after, before = params.get("starting_after"), params.get("ending_before")
    for cursor, param in ((after, "starting_after"), (before, "ending_before")):
        if cursor is not None and cursor not in ids:
            raise StandinError.missing(kind, str(cursor), param=param)
    if before is not None and after is None:
        start = ids.index(before)
        page = items[max(0, start - limit):start]
        return page, start - limit > 0
    start = ids.index(after) + 1 if after is not None else 0
    page = items[start:start + limit]
    return page, start + limit < len(items)


def list_objects(objects: dict[str, JSON], params: JSON, url: str, kind: str) -> JSON:
    """A Stripe list object of ``objects`` (kept in creation order), newest first."""
    bounds = _created_filter(params)
    items = [o for o in reversed(list(objects.values()))
             if all(_BOUNDS[op](o["created"], v) for op, v in bounds)]
    payment_intent = params.get("payment_intent")
    if payment_intent is not None:
        items = [o for o in items if o.get("payment_intent") == payment_intent]
    page, has_more = _window(items, params, kind)
    return {"object": "list", "data": copy.deepcopy(page), "has_more": has_more, "url": url}
