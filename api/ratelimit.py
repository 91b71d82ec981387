"""Rate limits per API key, with the ``limits`` library.

**Moving window**: a key may send at most N requests in any period of the limit's length
(every accepted request is remembered until it leaves the window). A fixed window would let a
key send 2N across a window boundary; the moving window never does, and "when does a slot
free" has an exact answer (when the oldest remembered request leaves the window), which is what
``Retry-After`` and ``RateLimit-Reset`` say. It costs one timestamp per accepted request, at
most the limit's N per key. Refused requests are not counted.

Each key has its own budget (two keys of one tenant never share one). The limits are the
tenant's ``rate_limits.per_key`` setting (e.g. ``"50/second"``), else ``RATE_LIMIT_DEFAULT``;
several limits (``"100/second;2000/minute"``) all apply. The counters live in
``RATE_LIMIT_STORAGE_URI``: ``memory://`` (each API process counts alone) or a store several
API replicas share (redis, mongodb). A store that cannot be reached fails open: the request
passes, logged.

``enforce`` runs in the principal dependency (``api/deps.py``) once the key is known: over the
limit it answers 429 ``rate_limited`` with ``Retry-After``; ``RateLimitHeaders`` adds
``RateLimit-Limit``/``-Remaining``/``-Reset`` (the IETF RateLimit header fields draft) to every
answer of a limited route, success or error. Routes without an API key (health, metrics, signed
webhooks) are not limited per key.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, Request
from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ProblemError
from contracts.errors import ErrorCode as E
from db.tenants import Principal
from settings import Settings

log = logging.getLogger(__name__)
NAMESPACE = "walletflow:api-key"
STATE = "rate_limit"  # the request's Verdict, in the ASGI scope's state


@dataclass(frozen=True)
class Verdict:
    """What a key's request was told: allowed or not, and the limit closest to running out."""

    allowed: bool
    limit: int  # requests per window of the limit reported
    remaining: int
    reset: int  # seconds until that window frees a slot (at least 1)

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset)}


@lru_cache(maxsize=256)
def parse_limits(text: str) -> tuple[RateLimitItem, ...]:
    """``"100/second;2000/minute"`` → its limits; ValueError when it is not that notation."""
    items = tuple(parse_many(text))
    if not items:
        raise ValueError(f"{text!r} names no rate limit")
    return items


def storage_uri(uri: str) -> str:
    """The async flavour of a storage URI (``redis://…`` → ``async+redis://…``)."""
    return uri if uri.startswith("async+") else "async+" + uri


class KeyRateLimiter:
    """A moving window per API key, over one storage (``Settings.rate_limit_storage_uri``)."""

    def __init__(self, default: str, uri: str = "memory://") -> None:
        self.default = parse_limits(default)
        self.storage = storage_from_string(storage_uri(uri), wrap_exceptions=True)
        self.strategy = MovingWindowRateLimiter(self.storage)

    def limits_for(self, tenant_settings: dict[str, Any]) -> tuple[RateLimitItem, ...]:
        """The tenant's ``rate_limits.per_key``, else the default (also for a malformed one)."""
        own = (tenant_settings.get("rate_limits") or {})
        per_key = own.get("per_key") if isinstance(own, dict) else None
        if not isinstance(per_key, str):
            return self.default
        try:
            return parse_limits(per_key)
        except ValueError:
            log.warning("tenant rate_limits.per_key %r is not a rate limit: using the default",
                        per_key)
            return self.default

    async def hit(self, key_id: str, items: tuple[RateLimitItem, ...]) -> Verdict:
        """Count one request of ``key_id`` against every limit, unless one of them is used up
        (then nothing is counted)."""
        ids = (NAMESPACE, key_id)
        refused = [item for item in items if not await self.strategy.test(item, *ids)]
        if not refused:  # hit is atomic: a concurrent request may still take the last slot
            refused = [item for item in items if not await self.strategy.hit(item, *ids)]
        now = time.time()
        windows = []
        for item in refused or items:
            stats = await self.strategy.get_window_stats(item, *ids)
            windows.append((max(0, stats.remaining), max(1, math.ceil(stats.reset_time - now)),
                            item.amount))
        if refused:
            _, reset, amount = max(windows, key=lambda w: w[1])  # the last to free a slot
            return Verdict(False, amount, 0, reset)
        remaining, reset, amount = min(windows)
        return Verdict(True, amount, remaining, reset)


async def enforce(limiter: KeyRateLimiter | None, request: Request, principal: Principal
                  ) -> None:
    """Count the request against its API key's limits; over them: 429 with ``Retry-After``."""
    if limiter is None:  # RATE_LIMIT_ENABLED=false
        return
    try:
        verdict = await limiter.hit(principal.key_id, limiter.limits_for(principal.settings))
    except StorageError as e:  # the shared store is unreachable: fail open
        log.warning("rate limit storage unavailable (%s): request not limited", e)
        return
    setattr(request.state, STATE, verdict)
    if not verdict.allowed:
        raise ProblemError(E.RATE_LIMITED, f"this API key sent more than {verdict.limit} "
                           f"requests in its window; retry in {verdict.reset} s",
                           headers={"Retry-After": str(verdict.reset)})


class RateLimitHeaders:
    """Adds the request's ``RateLimit-*`` headers to its answer, whatever answered it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # the dict request.state writes to

        async def send_with_headers(message: Message) -> None:
            verdict = state.get(STATE)
            if message["type"] == "http.response.start" and isinstance(verdict, Verdict):
                headers = MutableHeaders(scope=message)
                for name, value in verdict.headers().items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, settings: Settings) -> None:
    """The app's limiter (None when disabled) and the middleware that reports it."""
    app.state.rate_limiter = (KeyRateLimiter(settings.rate_limit_default,
                                             settings.rate_limit_storage_uri)
                              if settings.rate_limit_enabled else None)
    app.add_middleware(RateLimitHeaders)
