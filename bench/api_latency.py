"""(d) API flow-start latency: 32 clients, distinct Idempotency-Keys, time to the 201 (after
one warm-up request per client)."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack

import httpx

from bench.common import API_DB_POOL, CONCURRENT_STARTERS, BenchConfig, BenchError, Results, log
from bench.stack import Stack
from bench.stats import CpuWindow, fmt_cpu, fmt_stats, latency_stats, run_concurrent
from bench.topup import post_topup
from tests.support import create_tenant


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
