"""(m) A mixed load on the stack scripts/dev.py runs: the API (uvicorn), the worker
(`worker.py`) and the Stripe stand-in as separate processes, the run's Temporal dev server
(file-backed with `--stack file`) and PostgreSQL. Open loop (bench/openloop.py): top-ups,
wallet orders, card orders, partial refunds and pairs of concurrent refunds over 5 wallets.
First the same server's floor (3 no-op activities, 32 starters), then the offered rate is
stepped to find the saturation rate, then fixed loads at 70 % and 50 % of it, then top-ups
alone for the CPU per top-up (bench/procs.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import zlib
from collections import deque
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
from temporalio.client import Client
from temporalio.worker import Worker

from bench.common import STATE_DIR, STRIPE_KEY, WEBHOOK_SECRET, BenchConfig, BenchError, log
from bench.floor import FloorRunner, FloorWorkflow, noop_activity
from bench.histories import fmt_profiles, profiles
from bench.mixed_report import report_mixed
from bench.openloop import Window, open_loop
from bench.procs import Child, ProcCpu, free_port, postgres_processes, spawn, temporal_process
from bench.skeleton_load import SkeletonLoad
from bench.stack import Stack, make_settings
from bench.stats import run_concurrent
from contracts.ledger import AccountRef, TransferRequest
from db.ledger import LedgerRepository
from db.users import UserRepository
from temporal_client import connect
from tests.support import Tenant, create_tenant

WALLETS = 5
SEED_MINOR = 100_000_000  # 1,000,000.00 EUR per wallet
# (kind, weight); the bank test's mix: payments from the wallet, partial and concurrent
# refunds of them, top-ups and card payments through the stand-in.
# Wallet orders outnumber the refunds of them, so paid orders never run out.
MIX = [("topup", 0.3), ("wallet_order", 0.35), ("card_order", 0.1), ("partial_refund", 0.15),
       ("concurrent_refunds", 0.1)]
POOL = 40  # paid wallet orders kept ready to refund
FLOWS = {"concurrent_refunds": 2}  # workflows per arrival (else 1)
FLOWS_PER_ARRIVAL = sum(w * FLOWS.get(k, 1) for k, w in MIX) / sum(w for _, w in MIX)
STARTERS = 32
# Environment for the API and the worker on top of the bench's (BENCH_MIXED_ENV="K=V,K=V"),
# e.g. the worker tuning settings, DB_POOL_SIZE or LOG_LEVEL, to measure one change at a time.
EXTRA_ENV = dict(kv.split("=", 1) for kv in os.environ.get("BENCH_MIXED_ENV", "").split(",")
                 if "=" in kv)


@dataclass
class MixedStack:
    """The separate processes, their clients and the tenant the load runs as."""

    api: httpx.AsyncClient
    standin: httpx.AsyncClient
    client: Client
    tenant: Tenant
    procs: dict[str, tuple[psutil.Process, bool]]
    paid: deque[tuple[str, str]] = field(default_factory=deque)  # (order id, its flow id)
    samples: dict[str, list[str]] = field(default_factory=dict)  # kind → its flows' ids
    seq: itertools.count[int] = field(default_factory=itertools.count)

    def headers(self, key: str) -> dict[str, str]:
        return {**self.tenant.client, "Idempotency-Key": key}

    def user(self, n: int) -> str:
        return f"user-{1 + n % WALLETS}"


def child_env(st: Stack, queue: str, standin_url: str, extra: dict[str, str]
              ) -> dict[str, str]:
    return {"DATABASE_URL": st.db_url, "TEMPORAL_ADDRESS": st.temporal_address,
            "TEMPORAL_TASK_QUEUE": queue, "STRIPE_API_KEY": STRIPE_KEY,
            "STRIPE_API_BASE": standin_url, "STRIPE_CHECKOUT_BASE": standin_url,
            "STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET, "RATE_LIMIT_DEFAULT": "100000/second",
            "LOG_FORMAT": "text", **extra}


async def start_processes(stack: AsyncExitStack, st: Stack, extra: dict[str, str], tag: str
                          ) -> tuple[str, str, dict[str, Any]]:
    """The stand-in, the worker and the API as child processes, with ``extra`` in their
    environment (STANDIN_STATE_FILE=0: the stand-in keeps no state file); (API URL, stand-in
    URL, the processes)."""
    log_dir = STATE_DIR / f"mixed-{tag}"
    queue = f"walletflow-bench-mixed-{tag}-{st.run_id}"
    api_port, standin_port, health_port = free_port(), free_port(), free_port()
    api_url, standin_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{standin_port}"
    env = {**child_env(st, queue, standin_url, extra),
           "WORKER_HEALTH_ADDRESS": f"127.0.0.1:{health_port}"}
    py = psutil.Process().exe()
    state = ([] if extra.get("STANDIN_STATE_FILE") == "0"
             else ["--state-file", str(log_dir / f"standin-{st.run_id}.json")])
    standin = await spawn(stack, "standin", [
        py, "-m", "stripe_standin", "--port", str(standin_port), "--log-level", "warning",
        "--webhook-url", f"{api_url}/v1/webhooks/stripe", "--webhook-secret", WEBHOOK_SECRET,
        *state], env, log_dir)
    worker = await spawn(stack, "worker", [py, "worker.py"], env, log_dir)
    api = await spawn(stack, "api", [
        py, "-m", "uvicorn", "--factory", "api.app:app_factory", "--host", "127.0.0.1",
        "--port", str(api_port), "--log-level", "warning", "--no-access-log"], env, log_dir)
    await standin.wait_port(standin_port)
    await api.wait_port(api_port)
    await worker_ready(worker, health_port)
    procs: dict[str, Any] = {c.name: (psutil.Process(c.proc.pid), True)
                             for c in (api, worker, standin)}
    return api_url, standin_url, procs


async def worker_ready(worker: Child, port: int, within: float = 120.0) -> None:
    """Until the worker's /readyz says it polls (and PostgreSQL and Temporal answer)."""
    deadline = time.perf_counter() + within
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        while time.perf_counter() < deadline:
            worker.check()
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.3)
    raise BenchError(f"the worker was not ready within {within:.0f}s")


def server_processes(st: Stack) -> dict[str, tuple[psutil.Process, bool]]:
    me = psutil.Process()
    out: dict[str, tuple[psutil.Process, bool]] = {"bench_client": (me, False)}
    temporal = temporal_process(st.temporal_address)
    if temporal is not None:
        out["temporal"] = (temporal, True)
    for pg in postgres_processes(STATE_DIR.resolve() / "pgdata"):
        out["postgres"] = (pg, True)
    return out


async def seed_wallets(st: Stack, tenant: Tenant) -> None:
    async with st.sessions.begin() as s:
        for n in range(2, WALLETS + 1):
            await UserRepository(s).create(tenant.id, f"user-{n}", f"user{n}@example.com")
        for n in range(1, WALLETS + 1):
            await LedgerRepository(s).post(tenant.id, "seed", [TransferRequest(
                f"seed:user-{n}", AccountRef("gateway_clearing", "tenant", "EUR"),
                AccountRef("user_wallet", f"user-{n}", "EUR"), SEED_MINOR, "EUR", "seed")])


async def start_mixed(stack: AsyncExitStack, st: Stack, extra: dict[str, str] | None = None,
                      tag: str = "main") -> MixedStack:
    api_url, standin_url, procs = await start_processes(stack, st, extra or EXTRA_ENV, tag)
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    api = await stack.enter_async_context(
        httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits))
    standin = await stack.enter_async_context(
        httpx.AsyncClient(base_url=standin_url, timeout=60, limits=limits))
    client = await connect(make_settings(st.db_url, st.temporal_address, standin_url))
    tenant = await create_tenant(st.sessions, "bench-m")
    await seed_wallets(st, tenant)
    return MixedStack(api, standin, client, tenant, {**procs, **server_processes(st)})


async def expect(r: httpx.Response, *codes: int) -> dict[str, Any]:
    if r.status_code not in codes:
        raise BenchError(f"{r.request.method} {r.request.url.path} answered {r.status_code}: "
                         f"{r.text[:200]}")
    body: dict[str, Any] = r.json()
    return body


async def pay_and_wait(m: MixedStack, body: dict[str, Any], scheduled: float
                       ) -> dict[str, float]:
    """The payer pays at the stand-in; its signed webhook reaches the API; the flow ends."""
    started = time.perf_counter() - scheduled
    await expect(await m.standin.post(
        f"/_standin/payment_intents/{body['payment']['payment_id']}/succeed"), 200)
    paid = time.perf_counter()
    await m.client.get_workflow_handle(body["flow_id"]).result()
    done = time.perf_counter()
    return {"start": started, "paid_to_done": done - paid, "done": done - scheduled}


async def run_kind(m: MixedStack, kind: str, scheduled: float) -> dict[str, float]:
    n = next(m.seq)
    user, key = m.user(n), f"m-{n}"
    if kind == "topup":
        body = await expect(await m.api.post("/v1/topups", headers=m.headers(key), json={
            "user_id": user, "amount": "5.00", "currency": "EUR"}), 201)
        m.samples[kind] = [body["flow_id"]]
        return await pay_and_wait(m, body, scheduled)
    if kind in ("wallet_order", "card_order"):
        method = kind.removesuffix("_order")
        body = await expect(await m.api.post("/v1/orders", headers=m.headers(key), json={
            "order_id": key, "user_id": user, "amount": "10.00", "currency": "EUR",
            "method": method}), 201)
        m.samples[kind] = [body["flow_id"]]
        if method == "card":
            return await pay_and_wait(m, body, scheduled)
        m.paid.append((key, body["flow_id"]))
        return {"done": time.perf_counter() - scheduled}
    if not m.paid:
        raise BenchError("no paid wallet order left to refund")
    order, order_flow = m.paid.popleft()
    if kind == "partial_refund":
        r = await refund(m, order, f"{key}-r", "3.00")
        m.samples[kind] = [(await expect(r, 201))["flow_id"], order_flow]
    else:  # two concurrent refunds of 6.00 on 10.00: one is refunded, one refused
        a, b = await asyncio.gather(refund(m, order, f"{key}-a", "6.00"),
                                    refund(m, order, f"{key}-b", "6.00"))
        if sorted((a.status_code, b.status_code)) not in ([201, 409], [201, 422]):
            raise BenchError(f"concurrent refunds answered {a.status_code}, {b.status_code}")
        m.samples[kind] = [x.json()["flow_id"] for x in (a, b) if "flow_id" in x.json()]
    return {"done": time.perf_counter() - scheduled}


async def refund(m: MixedStack, order: str, key: str, amount: str) -> httpx.Response:
    return await m.api.post(f"/v1/orders/{order}/refunds", headers=m.headers(key), json={
        "amount": amount, "currency": "EUR", "destination": "wallet"})


async def measure_floor(st: Stack, total: int) -> dict[str, Any]:
    """The 3-activity floor on the same Temporal server, 32 starters."""
    runner = FloorRunner(st.temporal.client, st.run_id, f"bench-mfloor-{st.run_id}")
    async with Worker(runner.client, task_queue=runner.queue, workflows=[FloorWorkflow],
                      activities=[noop_activity]):
        await run_concurrent(STARTERS, STARTERS, lambda _w, i: runner.one("mwarm", i))
        cpu = ProcCpu(server_processes(st))
        lat, wall = await run_concurrent(STARTERS, total, lambda _w, i: runner.one("mconc", i))
        used = cpu.stop()
    return {"n": total, "wps": total / wall, "p50_ms": sorted(lat)[len(lat) // 2] * 1000,
            "cpu_ms_per_wf": {k: round(1000 * v / total, 2) for k, v in used.items()
                              if k != "wall_s"}}


async def window(m: MixedStack, flows_per_s: float, seconds: float, label: str,
                 mix: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    """One open-loop window at ``flows_per_s`` (the concurrent pair counts 2 flows)."""
    mix = mix or MIX
    per_arrival = FLOWS_PER_ARRIVAL if mix is MIX else 1.0
    cpu = ProcCpu(m.procs)
    win: Window = await open_loop(flows_per_s / per_arrival, seconds, mix,
                                  lambda k, t: run_kind(m, k, t), seed=zlib.crc32(label.encode()),
                                  drain=max(30.0, seconds))
    out = win.summary(grace=grace(seconds))
    out["cpu_s"] = cpu.stop()
    out["label"], out["flows_per_s_offered"] = label, round(flows_per_s, 2)
    flows = sum(FLOWS.get(k, 1) * v["completed"] for k, v in out["kinds"].items())
    out["flows_completed_per_s"] = round(flows / seconds, 2)
    out["cpu_ms_per_flow"] = {k: round(1000 * v / max(1, flows), 2)
                              for k, v in out["cpu_s"].items() if k != "wall_s"}
    log(f"(m) {label}: offered {flows_per_s:.1f} flows/s, completed "
        f"{out['flows_completed_per_s']:.1f}/s, keeps up {out['keeps_up']} (median ms "
        f"{out['median_first_third_ms']:.0f} → {out['median_last_third_ms']:.0f}), backlog max "
        f"{out['backlog_max']}, errors {sum(out['errors'].values())}; p99 ms "
        + ", ".join(f"{k} {v['done']['p99_ms']:.0f}" for k, v in out["kinds"].items()
                    if "done" in v))
    log("(m)   CPU ms per flow: " + ", ".join(
        f"{k} {v:.1f}" for k, v in out["cpu_ms_per_flow"].items()))
    for error, n in sorted(out["errors"].items(), key=lambda e: -e[1])[:3]:
        log(f"(m)   {n} x {error}")
    await settle(m)
    return out


async def settle(m: MixedStack, within: float = 90.0) -> None:
    """Until a wallet order is answered within a second again (the backlog of an overloaded
    window is gone), and the pool of paid orders is full again."""
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        try:
            if (await run_kind(m, "wallet_order", time.perf_counter()))["done"] < 1.0:
                break
        except (BenchError, httpx.HTTPError):
            await asyncio.sleep(1.0)
    missing = max(0, POOL - len(m.paid))
    await run_concurrent(8, missing, lambda _w, _i: run_kind_s(m, "wallet_order"))


async def run_kind_s(m: MixedStack, kind: str) -> float:
    return (await run_kind(m, kind, time.perf_counter()))["done"]


def grace(seconds: float) -> float:
    """Latency growth over a window still counted as keeping up."""
    return max(0.25, 0.02 * seconds)


async def warm_up(m: MixedStack, n: int) -> None:
    """Closed loop, 8 clients: paid orders to refund, then every kind a few times."""
    await run_concurrent(8, n, lambda _w, _i: run_kind_s(m, "wallet_order"))
    kinds = [k for k, _ in MIX] * 4
    await run_concurrent(8, len(kinds), lambda _w, i: run_kind_s(m, kinds[i]))


async def find_saturation(m: MixedStack, floor: float, seconds: float, refine: int
                          ) -> tuple[float, list[dict[str, Any]]]:
    """Step the offered rate (0.5x, 0.75x, 1x, 1.5x the floor, until one does not keep up;
    0.25x if none does), then halve the gap between the highest rate that kept up and the
    lowest that did not ``refine`` times; the highest rate that kept up, and the steps."""
    steps: list[dict[str, Any]] = []

    async def keeps_up(rate: float, label: str) -> bool:
        w = await window(m, rate, seconds, label)
        steps.append(w)
        return bool(w["keeps_up"])

    best, failed = 0.0, 0.0
    for factor in (0.5, 0.75, 1.0, 1.5):
        if not await keeps_up(factor * floor, f"step {factor:g}x floor"):
            failed = factor * floor
            break
        best = factor * floor
    if not best and await keeps_up(0.25 * floor, "step 0.25x floor"):
        best = 0.25 * floor
    for _ in range(refine if best and failed else 0):
        mid = (best + failed) / 2
        if await keeps_up(mid, f"step {mid / floor:.3g}x floor"):
            best = mid
        else:
            failed = mid
    return best, steps


async def part_mixed(st: Stack, cfg: BenchConfig, res: Any) -> None:
    seconds = cfg.mixed_seconds
    async with AsyncExitStack() as stack:
        m = await start_mixed(stack, st)
        floor = await measure_floor(st, 120 if cfg.quick else 400)
        log(f"(m) floor on this server, {STARTERS} starters: {floor['wps']:.1f} wf/s "
            f"(p50 {floor['p50_ms']:.0f} ms); CPU ms per workflow: " + ", ".join(
                f"{k} {v:.1f}" for k, v in floor["cpu_ms_per_wf"].items()))
        await warm_up(m, POOL)
        await settle(m)
        sat, steps = await find_saturation(m, floor["wps"], seconds, 2 if cfg.quick else 3)
        base = sat or 0.25 * floor["wps"]
        at70 = await window(m, 0.7 * base, seconds, "70% of saturation")
        at50 = await window(m, 0.5 * base, seconds, "50% of saturation")
        topups = await window(m, 0.5 * base, seconds, "top-ups alone, 50% of saturation",
                              mix=[("topup", 1.0)])
        skel = SkeletonLoad(m.client, st.run_id)
        async with skel.worker():
            await skel.window(0.5 * base, 3.0, "skeleton warm-up", m.procs)
            bare = {pct: await skel.window(pct / 100 * base, seconds,
                                           f"skeleton alone, {pct}% of saturation", m.procs)
                    for pct in (70, 50)}
        hist = await profiles(m.client, m.samples)
    for line in fmt_profiles(hist):
        log(f"(m) history of {line}")
    report_mixed(res, floor, sat, steps, {"at_70pct": at70, "at_50pct": at50,
                                          "topups_alone": topups, "skeleton_70pct": bare[70],
                                          "skeleton_50pct": bare[50]})
    res.details["mixed"]["histories"] = hist
    res.details["mixed"]["mix"] = MIX
