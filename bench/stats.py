"""Latency statistics, concurrent job loops and the CPU split of a measured window."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator

import psutil


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

