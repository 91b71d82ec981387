"""(m, with --mixed-variant K=V,…) One change measured against the baseline in one run: two
copies of the mixed stack's own processes (API, worker, stand-in) on the same Temporal server
and PostgreSQL, the second with K=V in its environment, take turns at the same offered rate
(A, B, A, B, …), so that the machine's changing load falls on both alike. Reported per copy:
flows/s completed, p50/p99 by kind, CPU ms per completed flow by process."""

from __future__ import annotations

import statistics
from contextlib import AsyncExitStack
from typing import Any

from bench.common import BenchConfig, Results, log
from bench.histories import fmt_profiles, profiles
from bench.mixed import POOL, measure_floor, settle, start_mixed, warm_up, window
from bench.stack import Stack

ROUNDS = 2


def parse_env(text: str) -> dict[str, str]:
    return dict(kv.strip().split("=", 1) for kv in text.split(",") if "=" in kv)


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one copy: medians of the per-window figures, CPU summed per flow."""
    kinds: dict[str, Any] = {}
    for kind in runs[0]["kinds"]:
        rows = [r["kinds"][kind] for r in runs if kind in r["kinds"]]
        kinds[kind] = {phase: {q: statistics.median(row[phase][q] for row in rows
                                                    if phase in row)
                               for q in ("p50_ms", "p99_ms")}
                       for phase in rows[0] if isinstance(rows[0][phase], dict)}
    flows = sum(r["flows_completed_per_s"] * r["seconds"] for r in runs)
    cpu: dict[str, float] = {}
    for r in runs:
        for name, sec in r["cpu_s"].items():
            if name != "wall_s":
                cpu[name] = cpu.get(name, 0.0) + sec
    return {"flows_completed_per_s": statistics.median(r["flows_completed_per_s"] for r in runs),
            "errors": sum(sum(r["errors"].values()) for r in runs), "kinds": kinds,
            "cpu_ms_per_flow": {k: round(1000 * v / max(1.0, flows), 2) for k, v in cpu.items()}}


def fmt(name: str, m: dict[str, Any]) -> str:
    p99 = ", ".join(f"{k} {v['done']['p99_ms']:.0f}" for k, v in m["kinds"].items()
                    if "done" in v)
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in m["cpu_ms_per_flow"].items())
    return (f"{name}: {m['flows_completed_per_s']:.2f} flows/s, errors {m['errors']}; "
            f"p99 ms {p99}; CPU ms per flow {cpu}")


async def part_mixed_ab(st: Stack, cfg: BenchConfig, res: Results) -> None:
    variant = parse_env(cfg.mixed_variant)
    async with AsyncExitStack() as stack:
        a = await start_mixed(stack, st, {}, "a")
        b = await start_mixed(stack, st, variant, "b")
        floor = await measure_floor(st, 120 if cfg.quick else 400)
        rate = cfg.mixed_rate or 0.5 * floor["wps"]
        log(f"(m) A/B at {rate:.1f} flows/s (floor {floor['wps']:.1f} wf/s); B: {variant}")
        await warm_up(a, POOL)
        await warm_up(b, POOL)
        await settle(a)
        runs: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        for r in range(ROUNDS):
            for name, m in (("a", a), ("b", b)):
                runs[name].append(await window(m, rate, cfg.mixed_seconds, f"{name} round {r}"))
        for line in fmt_profiles(await profiles(a.client, a.samples)):
            log(f"(m) history of {line}")
    merged = {name: merge(rs) for name, rs in runs.items()}
    log("(m) " + fmt("A (baseline)", merged["a"]))
    log("(m) " + fmt(f"B {variant}", merged["b"]))
    res.details["mixed_ab"] = {"variant": variant, "rate": rate, "floor": floor,
                               "merged": merged, "runs": runs}
    for name, row in merged.items():
        cpu = row["cpu_ms_per_flow"]
        res.add(f"ab_{name}_fps", f"(m) {name.upper()}: flows/s completed",
                row["flows_completed_per_s"], "flows/s")
        res.add(f"ab_{name}_own_cpu", f"(m) {name.upper()}: API + worker CPU per flow",
                cpu.get("api", 0) + cpu.get("worker", 0), "ms")
        res.add(f"ab_{name}_worst_p99", f"(m) {name.upper()}: worst kind's p99",
                max(v["done"]["p99_ms"] for v in row["kinds"].values() if "done" in v), "ms")
