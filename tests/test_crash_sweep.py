"""The crash sweep: every flow kind, killed (SIGKILL) at every step it takes — before each
activity runs and after each one committed but before its result was reported — on a real
`python worker.py`, restarted without that fault point, ends exactly as a run without a crash:
the same final state, the same ledger rows and outbox events, one gateway object of each kind.

First a clean run of each kind records the activities it executes (WALLETFLOW_FAULT_TRACE);
then one flow per point runs, each in its own tenant, all of a kind's at once on that kind's
worker, which is armed with all of their points (each scoped to its flow) and restarted with
one point fewer each time one fires. By default the `after:` points are swept;
WALLETFLOW_CRASH_SWEEP=full adds the `before:` ones, WALLETFLOW_CRASH_SWEEP_KINDS=topup,donation
sweeps only those kinds. The API's own fault point (between the claimed Idempotency-Key and
the start) is the last test. See docs/testing.md, "Crash sweep"."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from db.ledger import LedgerRepository
from faultpoints import POINT_ENV, read_trace
from tests.conftest import STRIPE_KEY, WEBHOOK_SECRET
from tests.crash_sweep import KINDS, Chain, Ctx, Kind, effects, spawn
from tests.support import create_tenant, eventually, topup
from tests.test_worker_crash import free_port

ROOT = Path(__file__).resolve().parent.parent
# The default sweeps the `after:` points (the side effect committed, its result lost: what a
# retry must recognise); WALLETFLOW_CRASH_SWEEP=full adds every `before:` point.
WHEN = ("before", "after") if os.environ.get("WALLETFLOW_CRASH_SWEEP") == "full" else ("after",)
SELECTED = [k for k in KINDS if not os.environ.get("WALLETFLOW_CRASH_SWEEP_KINDS")
            or k.name in os.environ["WALLETFLOW_CRASH_SWEEP_KINDS"].split(",")]


def worker_env(database_url: str, temporal_address: str, standin_url: str, queue: str
               ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETFLOW_FAULT")}
    return {**env, "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": temporal_address,
            "TEMPORAL_TASK_QUEUE": queue, "STRIPE_API_KEY": STRIPE_KEY,
            "STRIPE_API_BASE": standin_url, "STRIPE_CHECKOUT_BASE": standin_url,
            "STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET, "STRIPE_TIMEOUT_SECONDS": "2",
            "DB_POOL_SIZE": "3", "RUN_DISPATCHER": "false", "LOG_FORMAT": "json",
            # No sticky cache: a restarted worker picks up a killed one's flows at once
            # instead of after the sticky queue's timeout.
            "WORKER_MAX_CACHED_WORKFLOWS": "0",
            "JANITOR_INTERVAL_SECONDS": "0"}  # no janitor moving the swept flows along


async def sweep(kind: Kind, ctx: Ctx, chain: Chain) -> dict[str, object]:
    """One kind: a clean run, then one flow per point, all at once, each killed at its point."""
    began = time.monotonic()
    await chain.start()
    base = await create_tenant(ctx.sessions)
    await kind.prepare(ctx, base)
    base_flow = await kind.drive(ctx, base)
    assert await ctx.result(base_flow) == kind.final
    expected = await effects(ctx, base, base_flow)
    assert expected.wallet == kind.wallet, expected
    assert expected.creates == dict.fromkeys(kind.creates, 1), expected
    assert all(n == 1 for n in expected.objects.values() if n), expected
    points = [f"{when}:{activity}#{aid}" for activity, aid in chain.executed(base_flow)
              for when in WHEN]
    assert points, f"{kind.name}: the clean run executed no activity"
    tenants = [await create_tenant(ctx.sessions) for _ in points]
    await asyncio.gather(*(kind.prepare(ctx, t) for t in tenants))
    flows = [base_flow.replace(base.slug, t.slug) for t in tenants]
    chain.armed = {f"{p}@{f}" for p, f in zip(points, flows, strict=True)}
    await chain.stop()
    await chain.start()
    done = asyncio.Event()
    supervisor = asyncio.create_task(chain.supervise(done))

    async def run_all() -> list[str]:
        assert await asyncio.gather(*(kind.drive(ctx, t) for t in tenants)) == flows
        return await asyncio.gather(*(ctx.result(f) for f in flows))
    work = asyncio.create_task(run_all())
    await asyncio.wait({work, supervisor}, return_when=asyncio.FIRST_COMPLETED)
    done.set()
    if not work.done():  # the worker died another way than at a fault point: say why now
        work.cancel()
    await supervisor
    finals = await work
    assert chain.armed == set(), f"{kind.name}: points never reached: {sorted(chain.armed)}"
    for point, tenant, flow, final in zip(points, tenants, flows, finals, strict=True):
        assert f"{point}@{flow}" in chain.fired
        assert final == kind.final, (kind.name, point)
        got = await effects(ctx, tenant, flow)
        assert asdict(got) == asdict(expected), (kind.name, point, got, expected)
    return {"points": len(points), "seconds": round(time.monotonic() - began),
            "activities": [a for a, _ in chain.executed(base_flow)]}


@pytest.fixture(scope="module")
async def sweep_setup(start_api, database_url, temporal_address, temporal_env, standin, api,
                      sessions, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("crash-sweep")
    setups = []
    for kind in KINDS:
        queue = f"walletflow-sweep-{kind.name}-{secrets.token_hex(3)}"
        server = await start_api(temporal_task_queue=queue)
        env = worker_env(database_url, temporal_address, standin.url, queue)
        setups.append((kind, server.url, Chain(kind.name, env, workdir)))
    yield setups, workdir
    for _, _, chain in setups:
        await chain.stop()


async def test_every_flow_kind_survives_a_kill_at_every_step(sweep_setup, stripe_ctl, sessions,
                                                             temporal_env) -> None:
    setups, _ = sweep_setup
    chosen = [s for s in setups if s[0] in SELECTED]

    async def one(kind: Kind, url: str, chain: Chain) -> dict[str, object]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            return await sweep(kind, Ctx(http, stripe_ctl, sessions, temporal_env.client), chain)
    began = time.monotonic()
    reports = await asyncio.gather(*(one(*s) for s in chosen))
    summary = {k.name: r for (k, _, _), r in zip(chosen, reports, strict=True)}
    print(f"\ncrash sweep: {sum(r['points'] for r in reports)} points in "  # type: ignore[misc]
          f"{time.monotonic() - began:.0f} s: {summary}")
    async with sessions() as session:
        assert await LedgerRepository(session).check_invariants() == []


# -- the API between the claimed key and the start ---------------------------------------------


async def test_api_killed_between_claim_and_start_ends_in_one_flow(
        sweep_setup, database_url, temporal_address, temporal_env, standin, stripe_ctl,
        sessions, start_api) -> None:
    setups, workdir = sweep_setup
    kind, _, chain = next(s for s in setups if s[0].name == "topup")
    queue = chain.env["TEMPORAL_TASK_QUEUE"]
    tenant = await create_tenant(sessions)
    port = free_port()
    env = {**worker_env(database_url, temporal_address, standin.url, queue),
           POINT_ENV: "api:after-claim", "WALLETFLOW_FAULT_TRACE": str(workdir / "api.trace")}
    proc = spawn(["-m", "uvicorn", "--factory", "api.app:app_factory", "--port", str(port)],
                 env, workdir / "api.log")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as dying:
            async def up() -> bool:
                try:
                    return (await dying.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    assert proc.poll() is None, (workdir / "api.log").read_text()[-3000:]
                    return False
            await eventually(up, bool, within=60)
            with pytest.raises(httpx.TransportError):  # the process died mid-request
                await topup(dying, tenant, "api-crash", amount="12.00", currency="EUR")
        assert await asyncio.to_thread(proc.wait, 10) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
    [fired] = [line for line in read_trace(workdir / "api.trace") if line["fired"]]
    flow_id = fired["flow_id"]
    async with sessions() as s:
        row = (await s.execute(text(
            "SELECT response, locked_until > now() AS leased FROM flows "
            "WHERE tenant_id = :t AND idempotency_key = 'api-crash'"), {"t": tenant.id})).one()
    assert (row.response, row.leased) == (None, True)  # claimed and committed, never started
    await chain.start()  # a worker for the flow
    try:
        fresh = await start_api(temporal_task_queue=queue)
        async with httpx.AsyncClient(base_url=fresh.url, timeout=60) as http:
            # While the dead request's lease lasts, a retry is told to come back.
            r = await topup(http, tenant, "api-crash", amount="12.00", currency="EUR")
            assert (r.status_code, r.json()["code"]) == (409, "idempotency_in_progress"), r.text
            assert "retry-after" in r.headers
            # The lease ends (LEASE_SECONDS after the claim; moved to now rather than waited).
            async with sessions.begin() as s:
                await s.execute(text("UPDATE flows SET locked_until = now() WHERE tenant_id = :t"
                                     " AND idempotency_key = 'api-crash'"), {"t": tenant.id})
            r = await topup(http, tenant, "api-crash", amount="12.00", currency="EUR")
            assert (r.status_code, r.json()["flow_id"]) == (201, flow_id), r.text
            again = await topup(http, tenant, "api-crash", amount="12.00", currency="EUR")
            assert (again.status_code, again.json()) == (201, r.json())
            assert again.headers.get("idempotent-replayed") == "true"
    finally:
        await chain.stop()
    runs = [w async for w in temporal_env.client.list_workflows(f"WorkflowId = '{flow_id}'")]
    assert len(runs) == 1
    pis = (await stripe_ctl.get("/_standin/payment_intents", params={"flow_id": flow_id})
           ).json()["data"]
    assert len(pis) == 1
