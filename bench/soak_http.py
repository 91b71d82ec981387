"""The soak clients' HTTP side: the two APIs taken in turn, every request timed by kind, the
answers a client must retry (503 while a worker is down, 409 ``idempotency_in_progress``, a
connection refused) retried with the same Idempotency-Key, and what each client was told
(its oracle: amounts in minor units, per user, order and flow)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

RETRY_FOR = 180.0  # how long a request is retried while the stack recovers from a kill
POLL_FOR = 300.0  # how long a flow may take to end once its outside events happened


def fmt(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def minor(text: str) -> int:
    return int(Decimal(text) * 100)


@dataclass
class Recorder:
    """Every request's latency and status by kind, and what went wrong, for all clients."""

    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    per_api: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    finals: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    mismatches: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)

    def wrong(self, what: str) -> None:
        if len(self.mismatches) < 200:
            self.mismatches.append(what)


@dataclass
class OrderBook:
    order_id: str
    flow_id: str
    amount: int
    wallet: int
    state: str = "pending"
    refunded: int = 0


@dataclass
class UserBook:
    """What one client was told about its own user: the oracle."""

    user_id: str
    eur: int = 0
    pts: int = 0
    donated: int = 0
    donations: int = 0
    orders: dict[str, OrderBook] = field(default_factory=dict)
    flows: dict[str, tuple[str, str]] = field(default_factory=dict)  # flow id → (kind, state)


class Api:
    """Requests to the two APIs, alternating, timed and retried."""

    def __init__(self, api_urls: list[str], standin_url: str, rec: Recorder):
        self.apis = [httpx.AsyncClient(base_url=u, timeout=60) for u in api_urls]
        self.standin = httpx.AsyncClient(base_url=standin_url, timeout=60)
        self.rec = rec
        self.turn = 0
        self.payout_route: str | None = None  # a payee onboarding route, when the API has one

    async def close(self) -> None:
        for c in [*self.apis, self.standin]:
            await c.aclose()

    async def _once(self, kind: str, client: httpx.AsyncClient, method: str, path: str,
                    **kw: Any) -> httpx.Response | None:
        began = time.perf_counter()
        try:
            r = await client.request(method, path, **kw)
        except httpx.TransportError:
            self.rec.statuses[kind][0] += 1
            return None
        self.rec.latency[kind].append(time.perf_counter() - began)
        self.rec.statuses[kind][r.status_code] += 1
        self.rec.per_api[str(client.base_url).rstrip("/")] += 1
        return r

    async def call(self, kind: str, method: str, path: str, *, standin: bool = False,
                   **kw: Any) -> httpx.Response:
        """One request (each API in turn), retried while the stack cannot answer."""
        deadline = time.monotonic() + RETRY_FOR
        while True:
            self.turn += 1
            client = self.standin if standin else self.apis[self.turn % len(self.apis)]
            r = await self._once(kind, client, method, path, **kw)
            if r is not None and not _retryable(r):
                return r
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path}: no answer for {RETRY_FOR:.0f}s "
                                   f"(last {r.status_code if r else 'no connection'})")
            self.rec.retries[kind] += 1
            await asyncio.sleep(0.5)

    async def wait(self, path: str, headers: dict[str, str], done: Any,
                   within: float = POLL_FOR) -> dict[str, Any] | None:
        """GET ``path`` until ``done(body)``; None (and a stuck flow recorded) past ``within``."""
        deadline = time.monotonic() + within
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = await self.call("status", "GET", path, headers=headers)
            if r.status_code == 200:
                body = r.json()
                if done(body):
                    return body
            await asyncio.sleep(0.3)
        self.rec.stuck.append(f"{path}: not final within {within:.0f}s, last {body}")
        return None


def _retryable(r: httpx.Response) -> bool:
    if r.status_code == 503:
        return True
    if r.status_code == 409 and r.headers.get("content-type", "").startswith(
            "application/problem+json"):
        return bool(r.json().get("code") == "idempotency_in_progress")
    return False
