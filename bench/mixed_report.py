"""(m) The mixed part's figures: the issue's targets, and the same latencies read against the
top-up's Temporal skeleton offered at the same rate (bench/skeleton_load.py)."""

from __future__ import annotations

from typing import Any

from bench.common import log
from bench.skeleton_load import skeleton_p99


def p99(w: dict[str, Any], kind: str, phase: str = "done") -> float | None:
    row = w["kinds"].get(kind, {}).get(phase)
    return None if row is None else float(row["p99_ms"])


def cpu_per_topup(w: dict[str, Any]) -> dict[str, float]:
    n = max(1, w["kinds"].get("topup", {}).get("completed", 0))
    cpu = w["cpu_s"]
    own = cpu.get("api", 0.0) + cpu.get("worker", 0.0)
    return {"walletflow_ms": 1000 * own / n, "temporal_ms": 1000 * cpu.get("temporal", 0) / n,
            "standin_ms": 1000 * cpu.get("standin", 0) / n,
            "postgres_ms": 1000 * cpu.get("postgres", 0) / n,
            "bench_client_ms": 1000 * cpu.get("bench_client", 0) / n, "topups": n}


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def worst_p99(w: dict[str, Any]) -> float | None:
    return max((v["done"]["p99_ms"] for v in w["kinds"].values() if "done" in v), default=None)


def report_mixed(res: Any, floor: dict[str, Any], sat: float, steps: list[dict[str, Any]],
                 windows: dict[str, dict[str, Any]]) -> None:
    at70, at50 = windows["at_70pct"], windows["at_50pct"]
    cpu = cpu_per_topup(windows["topups_alone"])
    log(f"(m) CPU per top-up: walletflow (API + worker) {cpu['walletflow_ms']:.1f} ms, "
        f"Temporal {cpu['temporal_ms']:.1f} ms, stand-in {cpu['standin_ms']:.1f} ms, "
        f"PostgreSQL {cpu['postgres_ms']:.1f} ms, bench client {cpu['bench_client_ms']:.1f} ms")
    res.details["mixed"] = {"floor": floor, "saturation_flows_per_s": sat, "steps": steps,
                            **windows, "cpu_per_topup": cpu}
    res.add("mixed_floor_wps", "(m) floor on the mixed run's server, 32 starters",
            floor["wps"], "wf/s")
    res.add("mixed_saturation", "(m) mixed saturation rate", sat, "flows/s")
    res.add("mixed_saturation_over_floor", "(m) mixed saturation / floor", sat / floor["wps"],
            "", (">=", 1.0))
    res.add("mixed_saturation_proposed", "(m) mixed saturation / floor (proposed)",
            sat / floor["wps"], "", (">=", 0.5))
    res.add("mixed_70_worst_p99_ms", "(m) 70% of saturation: worst kind's p99", worst_p99(at70),
            "ms", ("<=", 250.0))
    res.add("mixed_50_start_p99_ms", "(m) 50%: top-up flow-start p99", p99(at50, "topup", "start"),
            "ms", ("<=", 50.0))
    res.add("mixed_50_credit_p99_ms", "(m) 50%: top-up paid → credited p99",
            p99(at50, "topup", "paid_to_done"), "ms", ("<=", 50.0))
    report_against_skeleton(res, windows)
    res.add("mixed_cpu_walletflow_ms", "(m) API + worker CPU per top-up", cpu["walletflow_ms"],
            "ms")
    res.add("mixed_cpu_temporal_ms", "(m) Temporal server CPU per top-up", cpu["temporal_ms"],
            "ms")
    res.add("mixed_cpu_ratio", "(m) walletflow / Temporal CPU per top-up",
            _ratio(cpu["walletflow_ms"], cpu["temporal_ms"]), "", ("<=", 1.0))


def report_against_skeleton(res: Any, windows: dict[str, dict[str, Any]]) -> None:
    """The skeleton alone at the same offered rates: Temporal's own share of each latency."""
    at70, at50 = windows["at_70pct"], windows["at_50pct"]
    s70, s50 = windows.get("skeleton_70pct"), windows.get("skeleton_50pct")
    rows = [
        ("skel_70_done_p99_ms", "(m) 70%: the skeleton alone, p99 start → result",
         skeleton_p99(s70, "done"), "ms"),
        ("mixed_70_worst_over_skel", "(m) 70%: worst kind's p99 / the skeleton's (proposed)",
         _ratio(worst_p99(at70), skeleton_p99(s70, "done")), ("<=", 4.0)),
        ("skel_50_start_p99_ms", "(m) 50%: the skeleton alone, p99 start → checkout",
         skeleton_p99(s50, "start"), "ms"),
        ("mixed_50_start_over_skel", "(m) 50%: top-up flow-start p99 / the skeleton's (proposed)",
         _ratio(p99(at50, "topup", "start"), skeleton_p99(s50, "start")), ("<=", 4.0)),
        ("skel_50_signal_p99_ms", "(m) 50%: the skeleton alone, p99 signal → result",
         skeleton_p99(s50, "paid_to_done"), "ms"),
        ("mixed_50_credit_over_skel", "(m) 50%: paid → credited p99 / the skeleton's (proposed)",
         _ratio(p99(at50, "topup", "paid_to_done"), skeleton_p99(s50, "paid_to_done")),
         ("<=", 3.0)),
    ]
    for key, label, value, unit_or_target in rows:
        if value is None:
            continue
        if isinstance(unit_or_target, tuple):  # a ratio with the target proposed for it
            res.add(key, label, value, "", unit_or_target)
        else:
            res.add(key, label, value, unit_or_target)
