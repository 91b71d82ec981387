"""Dependency faults under load: PostgreSQL stopped for 20 s, then the Temporal server killed
(SIGKILL) and restarted, while four clients keep starting top-ups (paid at the stand-in),
wallet orders and refunds, and reading wallets.

Every answer is a success, a valid refusal, or 503 application/problem+json with Retry-After —
never a 500, never a hang past the client's timeout; ``/readyz`` is 503 while a dependency is
down and 200 once it is back; the worker rides both faults out; afterwards every flow ends,
``walletflow ledger check`` is clean, each currency sums to zero, each paid top-up is credited
exactly once, and no outbox event is recorded twice.

The stack is the test's own (tests/fault_stack.py): its PostgreSQL, its file-backed Temporal dev
server, its stand-in, API, worker and dispatcher; the session's PostgreSQL and Temporal are
never touched. Clients retry a 503 (and a 409 ``idempotency_in_progress``) with the same
Idempotency-Key after its Retry-After, as a well-behaved client does."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus

from api.app import create_app
from db.engine import create_engine, session_factory
from db.ledger import LedgerRepository
from db.migrate import upgrade_async
from db.users import UserRepository
from dispatcher import Dispatcher
from settings import Settings
from temporal_client import connect
from tests.conftest import WEBHOOK_SECRET, make_settings
from tests.fault_stack import PrivatePostgres, TemporalDevServer
from tests.support import LiveServer, Tenant, create_tenant, eventually
from worker import build_gateways, build_worker

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = "application/problem+json"
PG_OUTAGE = 20.0  # seconds PostgreSQL stays stopped (the figure)
# Seconds between the Temporal server's SIGKILL and its restart: longer than the SDK's own
# retries of an unavailable server (RetryConfig.max_elapsed_time, 10 s), so a flow start asked
# at the kill is answered 503 while the server is still down, not held until it is back.
TEMPORAL_OUTAGE = 12.0
CALM = 6.0  # seconds of load before, between and after the faults
CLIENTS = 4
CLIENT_TIMEOUT = 40.0  # a flow start waits up to 20 s for its first answer (api/flowstart.py)
TOPUP_EXPIRY = 10  # a top-up whose payer never paid (its answer was lost) ends this soon
SEED = 100_00  # each user's wallet before the load (minor units)
TOPUP, ORDER, REFUND = 5_00, 2_00, 1_00
# What an answer may be, fault or not: a success, a business refusal, 503 (retried).
ALLOWED = {200, 201, 202, 402, 409, 422, 503}
FINAL = {"TopUpWorkflow": {"completed", "failed", "expired"},
         "OrderPaymentWorkflow": {"paid", "failed", "expired"},
         "RefundWorkflow": {"refunded", "failed", "refused", "rejected", "expired"}}


@dataclass
class Call:
    what: str
    started: float
    ended: float = 0.0
    status: int | None = None
    content_type: str = ""
    retry_after: str | None = None
    body: Any = None
    error: str | None = None


@dataclass
class Stack:
    api: LiveServer
    standin: LiveServer
    temporal: TemporalDevServer
    pg: PrivatePostgres
    url: str
    sessions: async_sessionmaker[AsyncSession]
    client: Client  # the worker's: encrypted payloads
    tenant: Tenant
    calls: list[Call] = field(default_factory=list)
    readyz: list[Call] = field(default_factory=list)


async def _send(stack: Stack, http: httpx.AsyncClient, what: str, method: str, path: str,
                **kwargs: Any) -> Call:
    call = Call(what, time.monotonic())
    try:
        r = await http.request(method, path, **kwargs)
        call.status, call.content_type = r.status_code, r.headers.get("content-type", "")
        call.retry_after = r.headers.get("retry-after")
        call.body = r.json() if "json" in call.content_type else r.text
    except httpx.HTTPError as e:  # a hang past the client's timeout, a dropped connection
        call.error = f"{type(e).__name__}: {e}"
    call.ended = time.monotonic()
    stack.calls.append(call)
    return call


def _retryable(call: Call) -> bool:
    code = call.body.get("code") if isinstance(call.body, dict) else None
    return call.status == 503 or (call.status == 409 and code == "idempotency_in_progress")


async def _flow_start(stack: Stack, http: httpx.AsyncClient, stop: asyncio.Event, what: str,
                      path: str, key: str, body: dict[str, Any]) -> Call:
    """One flow-starting request, retried with the same key while it is told to retry."""
    headers = {**stack.tenant.client, "Idempotency-Key": key}
    while True:
        call = await _send(stack, http, what, "POST", path, json=body, headers=headers)
        if not _retryable(call) or stop.is_set():
            return call
        await asyncio.sleep(float(call.retry_after or 1))


async def _client(stack: Stack, n: int, stop: asyncio.Event) -> None:
    """A shop's backend: top up (and pay), pay an order from the wallet, refund part of the
    last paid order, read the wallet — round and round until ``stop``."""
    user, paid_order, i = f"user-{n}", None, n  # each client starts at another step
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=CLIENT_TIMEOUT) as http, \
            httpx.AsyncClient(base_url=stack.standin.url, timeout=CLIENT_TIMEOUT) as stripe:
        while not stop.is_set():
            i += 1
            step = i % 4
            if step == 1:
                c = await _flow_start(stack, http, stop, "topup", "/v1/topups", f"tu-{n}-{i}",
                                      {"user_id": user, "amount": "5.00", "currency": "EUR"})
                if c.status == 201 and isinstance(c.body, dict) and c.body.get("payment"):
                    r = await stripe.post(f"/_standin/payment_intents/"
                                          f"{c.body['payment']['payment_id']}/succeed")
                    # 409: already canceled (the top-up expired while its answer was delayed)
                    assert r.status_code in (200, 409), r.text
            elif step == 2:
                c = await _flow_start(stack, http, stop, "order", "/v1/orders", f"or-{n}-{i}",
                                      {"order_id": f"o-{n}-{i}", "user_id": user,
                                       "amount": "2.00", "currency": "EUR", "method": "wallet"})
                if c.status == 201 and isinstance(c.body, dict) and c.body.get("state") == "paid":
                    paid_order = f"o-{n}-{i}"
            elif step == 3 and paid_order is not None:
                await _flow_start(stack, http, stop, "refund", f"/v1/orders/{paid_order}/refunds",
                                  f"rf-{n}-{i}", {"amount": "1.00", "currency": "EUR",
                                                  "destination": "wallet"})
                paid_order = None
            else:
                await _send(stack, http, "wallet", "GET", f"/v1/wallets/{user}",
                            headers=stack.tenant.client)
            await asyncio.sleep(0.05)


async def _probe(stack: Stack, stop: asyncio.Event) -> None:
    """Twice a second, whatever the clients are waiting for: /readyz, a wallet read and a fresh
    top-up (not retried), each on its own, so that every moment of an outage is asked about."""
    async def readyz(http: httpx.AsyncClient) -> None:
        call = await _send(stack, http, "readyz", "GET", "/readyz")
        stack.calls.remove(call)
        stack.readyz.append(call)

    tasks: list[asyncio.Task[Any]] = []
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=CLIENT_TIMEOUT) as http:
        i = 0
        while not stop.is_set():
            i += 1
            tasks += [asyncio.create_task(readyz(http)),
                      asyncio.create_task(_send(stack, http, "wallet", "GET", "/v1/wallets/user-1",
                                                headers=stack.tenant.client)),
                      asyncio.create_task(_send(
                          stack, http, "topup", "POST", "/v1/topups",
                          json={"user_id": "user-1", "amount": "5.00", "currency": "EUR"},
                          headers={**stack.tenant.client, "Idempotency-Key": f"probe-{i}"}))]
            await asyncio.sleep(0.5)
        await asyncio.gather(*tasks)


async def _ready(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=CLIENT_TIMEOUT) as http:
        await eventually(lambda: http.get("/readyz"), lambda r: r.status_code == 200,
                         within=90, interval=0.25)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    pg = PrivatePostgres(ROOT / ".walletflow" / f"test-faults-{secrets.token_hex(3)}", "faults")
    temporal = TemporalDevServer(tmp_path)
    try:
        async def database() -> str:
            url = await pg.start()
            await upgrade_async(url)
            return url
        url, _ = await asyncio.gather(database(), temporal.start())
        async with _running(pg, url, temporal) as running:
            yield running
    finally:
        await temporal.stop()
        await pg.cleanup()


def _settings(url: str, temporal: str, standin: str, queue: str) -> Settings:
    return make_settings(url, temporal, standin, temporal_task_queue=queue,
                         topup_expiry_seconds=TOPUP_EXPIRY)


class _running:  # noqa: N801 - used as ``async with _running(...)``
    """The stand-in, API, worker and dispatcher over the private PostgreSQL and Temporal."""

    def __init__(self, pg: PrivatePostgres, url: str, temporal: TemporalDevServer):
        self.pg, self.url, self.temporal = pg, url, temporal

    async def __aenter__(self) -> Stack:
        from stripe_standin import StandinConfig
        from stripe_standin import create_app as create_standin

        # Stripe retries a webhook for days; these retries outlast the outage.
        self.standin = await LiveServer(create_standin(StandinConfig(
            webhook_url=None, webhook_secrets=[WEBHOOK_SECRET],
            webhook_retry_delays=(0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0)))).start()
        queue = f"walletflow-faults-{secrets.token_hex(4)}"
        settings = _settings(self.url, self.temporal.address, self.standin.url, queue)
        self.engine = create_engine(self.url, 5, pre_ping=False)  # as worker.py builds it
        sessions = session_factory(self.engine)
        self.gateways = build_gateways(settings)
        client = await connect(settings)
        self.worker = build_worker(client, queue, sessions, self.gateways)
        await self.worker.__aenter__()
        self.dispatcher = asyncio.create_task(Dispatcher(client, sessions, queue, 0.2).run())
        self.api = await LiveServer(create_app(settings)).start()
        async with httpx.AsyncClient(base_url=self.standin.url) as c:
            (await c.put("/_standin/config", json={
                "webhook_url": f"{self.api.url}/v1/webhooks/stripe",
                "webhook_secrets": [WEBHOOK_SECRET]})).raise_for_status()
        tenant = await create_tenant(sessions, "faults")
        await _seed_users(sessions, tenant)
        return Stack(self.api, self.standin, self.temporal, self.pg, self.url, sessions, client,
                     tenant)

    async def __aexit__(self, *exc: object) -> None:
        await self.api.stop()
        self.dispatcher.cancel()
        await self.worker.__aexit__(None, None, None)
        for gw in self.gateways.values():
            await gw.close()
        await self.standin.stop()
        await self.engine.dispose()


async def _seed_users(sessions: async_sessionmaker[AsyncSession], tenant: Tenant) -> None:
    from tests.test_orders import fund

    async with sessions.begin() as s:
        for n in range(2, CLIENTS + 1):
            await UserRepository(s).create(tenant.id, f"user-{n}", f"user{n}@example.com")
    for n in range(1, CLIENTS + 1):
        await fund(sessions, tenant, SEED, user=f"user-{n}")


# -- the test -----------------------------------------------------------------------------------


async def test_postgres_stopped_and_temporal_killed_under_load(stack: Stack) -> None:
    stop = asyncio.Event()
    load = [asyncio.create_task(_client(stack, n, stop)) for n in range(1, CLIENTS + 1)]
    load.append(asyncio.create_task(_probe(stack, stop)))
    outages: dict[str, tuple[float, float]] = {}
    try:
        await asyncio.sleep(CALM)
        await stack.pg.stop()
        down = time.monotonic()
        await asyncio.sleep(PG_OUTAGE)
        outages["postgres"] = (down, time.monotonic())
        await stack.pg.restart()
        await _ready(stack)
        await asyncio.sleep(CALM)
        await stack.temporal.kill()
        down = time.monotonic()
        await asyncio.sleep(TEMPORAL_OUTAGE)
        outages["temporal"] = (down, time.monotonic())
        await stack.temporal.start()
        await _ready(stack)
        await asyncio.sleep(CALM)
    finally:
        stop.set()
        await asyncio.gather(*load)
    _dump(stack, outages)
    _assert_answers(stack, outages)
    await _payers_pay(stack)
    states = await _final_states(stack)
    await _assert_ledger(stack, states)


def _dump(stack: Stack, outages: dict[str, tuple[float, float]]) -> None:
    """Every answer, for a person reading a failure: ``calls.json`` in the test's directory."""
    import json

    t0 = min(c.started for c in stack.calls)
    out = {"outages": {k: [a - t0, b - t0] for k, (a, b) in outages.items()},
           "calls": [{**c.__dict__, "started": c.started - t0, "ended": c.ended - t0}
                     for c in [*stack.calls, *stack.readyz]]}
    (stack.temporal.workdir / "calls.json").write_text(json.dumps(out, indent=1, default=str))


def _assert_answers(stack: Stack, outages: dict[str, tuple[float, float]]) -> None:
    """No 500, no hang; every refusal problem+json, every 503 with Retry-After; each outage
    was seen (503s during it) and /readyz said 503 throughout it."""
    bad = [c for c in stack.calls if c.error or c.status not in ALLOWED]
    assert bad == [], bad[:5]
    for c in stack.calls:
        if c.status is not None and c.status >= 400:
            assert c.content_type == PROBLEM, c
        if c.status == 503:
            assert c.retry_after and c.body["code"] in ("db_unavailable", "temporal_unavailable"), c
    for name, (down, up) in outages.items():
        # Asked while it was down (answered then or once it was back, within the timeout).
        asked = [c for c in stack.calls if down <= c.started <= up]
        assert any(c.status == 503 for c in asked), (name, Counter(
            (c.what, c.status) for c in asked))
        inside = [c for c in asked if c.ended <= up]
        if name == "postgres":  # nothing answers without the database
            assert {c.status for c in inside} == {503}, (name, Counter(
                (c.what, c.status) for c in inside))
        probes = [c for c in stack.readyz if down <= c.started and c.ended <= up]
        assert probes and {c.status for c in probes} == {503}, (name, probes)
    assert stack.readyz[-1].status == 200, stack.readyz[-1]
    assert any(c.status == 201 and c.what == "topup" for c in stack.calls)


async def _payers_pay(stack: Stack) -> None:
    """Every payment still open is paid (its payer heard of it late, or the answer that named it
    was lost): those top-ups complete instead of waiting for their expiry."""
    async with httpx.AsyncClient(base_url=stack.standin.url, timeout=CLIENT_TIMEOUT) as c:
        r = await c.get("/_standin/payment_intents", params={"status": "requires_payment_method"})
        for pi in r.json()["data"]:
            paid = await c.post(f"/_standin/payment_intents/{pi['id']}/succeed")
            assert paid.status_code in (200, 409), paid.text  # 409: canceled at its expiry


async def _final_states(stack: Stack) -> dict[str, tuple[str, str]]:
    """Every workflow Temporal holds ends (a top-up whose payer never heard of its payment
    expires); flow id → (workflow type, final state)."""
    async def running() -> int:
        return len([w async for w in stack.client.list_workflows(
            'ExecutionStatus="Running"')])
    await eventually(running, lambda n: n == 0, within=TOPUP_EXPIRY + 60, interval=0.5)
    states: dict[str, tuple[str, str]] = {}
    async for w in stack.client.list_workflows():
        assert w.status == WorkflowExecutionStatus.COMPLETED, (w.id, w.status)
        result = await stack.client.get_workflow_handle(w.id).result()
        state = str(result["state"] if isinstance(result, dict) else getattr(result, "state",
                                                                              result))
        assert state in FINAL.get(w.workflow_type, {state}), (w.id, w.workflow_type, state)
        states[w.id] = (w.workflow_type, state)
    started = {c.body["flow_id"] for c in stack.calls
               if c.status in (200, 201, 202) and isinstance(c.body, dict) and "flow_id" in c.body}
    assert started and started <= set(states), started - set(states)
    return states


async def _assert_ledger(stack: Stack, states: dict[str, tuple[str, str]]) -> None:
    async with stack.sessions() as s:
        problems = await LedgerRepository(s).check_invariants()  # `walletflow ledger check`
        assert problems == [], problems
        async def rows(sql: str, **params: str) -> list[Any]:
            return list(await s.execute(text(sql), params))
        sums = await rows("SELECT currency, sum(posted) FROM accounts GROUP BY currency")
        credits = Counter(r[0] for r in await rows(
            "SELECT idempotency_key FROM transfers WHERE idempotency_key LIKE :credit",
            credit="%:topup:%:credit"))
        events = await rows("SELECT type, event_key, count(*) FROM outbox_events "
                            "GROUP BY 1, 2 HAVING count(*) > 1")
        completed_events = (await s.execute(text(
            "SELECT count(*) FROM outbox_events WHERE type = 'topup.completed'"))).scalar_one()
        wallets = (await s.execute(text(
            "SELECT coalesce(sum(posted), 0) FROM accounts WHERE kind = 'user_wallet' "
            "AND currency = 'EUR'"))).scalar_one()
    assert all(total == 0 for _, total in sums), sums
    assert events == [], events
    by_state = Counter(states.values())
    completed = {f for f, (kind, st) in states.items() if (kind, st) == ("TopUpWorkflow",
                                                                          "completed")}
    assert set(credits) == {f"{f}:credit" for f in completed}, (credits, completed)
    assert set(credits.values()) <= {1} and completed_events == len(completed)
    paid = await _paid_intents(stack)
    assert paid == completed, (paid ^ completed)  # every paid top-up credited, none unpaid
    assert wallets == CLIENTS * SEED + TOPUP * len(completed) - ORDER * by_state[
        ("OrderPaymentWorkflow", "paid")] + REFUND * by_state[("RefundWorkflow", "refunded")], (
        wallets, by_state)


async def _paid_intents(stack: Stack) -> set[str]:
    """The top-ups whose PaymentIntent succeeded at the stand-in."""
    async with httpx.AsyncClient(base_url=stack.standin.url, timeout=CLIENT_TIMEOUT) as c:
        r = await c.get("/_standin/payment_intents", params={"status": "succeeded"})
    return {pi["metadata"]["flow_id"] for pi in r.json()["data"]
            if ":topup:" in pi["metadata"].get("flow_id", "")}
