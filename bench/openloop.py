"""An open-loop load: arrivals on a schedule that does not wait for completions (Poisson, or a
fixed interval), each arrival its own task, every latency measured from the arrival's
*scheduled* time (so a late scheduler or a queue shows up in the figures instead of slowing
the offered load down: no coordinated omission)."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.stats import percentile

# A job runs one arrival of ``kind`` scheduled at ``scheduled`` (time.perf_counter()) and
# returns its phases in seconds: "done" (scheduled → the arrival's last answer) and others.
Job = Callable[[str, float], Awaitable[dict[str, float]]]
KEEP_UP = 0.95  # completed within the window (+ grace) / offered, to count as keeping up


@dataclass
class Window:
    """One open-loop run at one offered rate."""

    rate: float
    seconds: float
    started: float
    offered: Counter[str] = field(default_factory=Counter)
    phases: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    done_at: list[float] = field(default_factory=list)
    # (scheduled offset in the window, seconds to "done") of every completed arrival
    arrivals: list[tuple[float, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    backlog: list[int] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)

    @property
    def end(self) -> float:
        return self.started + self.seconds

    def record(self, kind: str, scheduled: float, phases: dict[str, float]) -> None:
        by_phase = self.phases.setdefault(kind, {})
        for phase, seconds in phases.items():
            by_phase.setdefault(phase, []).append(seconds)
        self.done_at.append(scheduled + phases["done"])
        self.arrivals.append((scheduled - self.started, phases["done"]))

    def completed_in_time(self, grace: float) -> int:
        return sum(1 for t in self.done_at if t <= self.end + grace)

    def latency_trend(self) -> tuple[float, float]:
        """Median latency (s) of the arrivals scheduled in the window's first and last third."""
        def median(lo: float, hi: float) -> float:
            ms = sorted(d for at, d in self.arrivals if lo <= at < hi)
            return percentile(ms, 50) if ms else math.inf
        third = self.seconds / 3
        return median(0, third), median(2 * third, self.seconds)

    def keeps_up(self, grace: float) -> bool:
        """At least 95 % of the offered arrivals completed (drain included), and no growing
        backlog: the last third's median latency is within 1.5x (+ ``grace``) of the first's,
        and the arrivals in flight at the window's end are at most 2 s worth (+ 2)."""
        offered = sum(self.offered.values())
        first, last = self.latency_trend()
        in_flight = self.backlog[-1] if self.backlog else 0
        return (offered > 0 and len(self.done_at) >= KEEP_UP * offered
                and last <= 1.5 * first + grace and in_flight <= 2 * self.rate + 2)

    def summary(self, grace: float) -> dict[str, Any]:
        offered = sum(self.offered.values())
        kinds: dict[str, Any] = {}
        for kind, n in sorted(self.offered.items()):
            row: dict[str, Any] = {"offered": n, "completed": len(
                self.phases.get(kind, {}).get("done", [])),
                "per_s": len(self.phases.get(kind, {}).get("done", [])) / self.seconds}
            for phase, values in self.phases.get(kind, {}).items():
                ms = sorted(v * 1000 for v in values)
                row[phase] = {"p50_ms": round(percentile(ms, 50), 1),
                              "p99_ms": round(percentile(ms, 99), 1)}
            kinds[kind] = row
        late = sorted(self.lateness)
        first, last = self.latency_trend()
        return {"rate": round(self.rate, 2), "seconds": self.seconds, "offered": offered,
                "completed": len(self.done_at), "completed_in_time": self.completed_in_time(grace),
                "keeps_up": self.keeps_up(grace), "errors": dict(self.errors),
                "median_first_third_ms": round(first * 1000, 1),
                "median_last_third_ms": round(last * 1000, 1),
                "backlog_max": max(self.backlog, default=0),
                "backlog_end": self.backlog[-1] if self.backlog else 0,
                "scheduler_late_p99_ms": round(percentile(late, 99) * 1000, 1) if late else 0,
                "kinds": kinds}


def arrival_gaps(rate: float, seconds: float, rng: random.Random, poisson: bool) -> list[float]:
    """Arrival offsets from the window's start."""
    out: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate) if poisson else 1 / rate
        if t >= seconds:
            return out
        out.append(t)


async def _arrival(win: Window, kind: str, scheduled: float, job: Job) -> None:
    try:
        win.record(kind, scheduled, await job(kind, scheduled))
    except Exception as e:  # noqa: BLE001 - counted and reported, the load goes on
        win.errors[f"{kind}: {type(e).__name__}: {str(e)[:48]}"] += 1


async def _sample_backlog(win: Window, tasks: set[asyncio.Task[None]]) -> None:
    while True:
        await asyncio.sleep(1.0)
        win.backlog.append(sum(1 for t in tasks if not t.done()))


async def open_loop(rate: float, seconds: float, mix: list[tuple[str, float]], job: Job,
                    seed: int = 1, drain: float = 30.0, poisson: bool = True) -> Window:
    """Offer ``rate`` arrivals/s for ``seconds``, each of a kind drawn from ``mix`` (kind,
    weight); then give the arrivals in flight up to ``drain`` seconds to finish."""
    rng = random.Random(seed)
    kinds, weights = zip(*mix, strict=True)
    win = Window(rate, seconds, time.perf_counter() + 0.05)
    tasks: set[asyncio.Task[None]] = set()
    sampler = asyncio.create_task(_sample_backlog(win, tasks))
    for offset in arrival_gaps(rate, seconds, rng, poisson):
        scheduled = win.started + offset
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        win.lateness.append(max(0.0, time.perf_counter() - scheduled))
        kind = rng.choices(kinds, weights)[0]
        win.offered[kind] += 1
        tasks.add(asyncio.create_task(_arrival(win, kind, scheduled, job)))
    await asyncio.sleep(max(0.0, win.end - time.perf_counter()))
    if tasks:
        await asyncio.wait(tasks, timeout=drain)
    sampler.cancel()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, sampler, return_exceptions=True)
    return win
