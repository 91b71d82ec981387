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
(e) the peak RSS of a worker subprocess holding K top-ups open, awaiting payment;
(m) a mixed load, open loop, on the API, worker and stand-in as separate processes, beside
    the same Temporal server's floor.

    .venv/bin/python bench/run.py [--quick] [--parts a,b,c,d,e,m] [--stack file|memory]

The summary is printed and written to bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `python bench/run.py` puts bench/, not the project, on the path: the project instead (the
# part modules are imported as `bench.*`, never as top-level modules).
sys.path[:] = [p for p in sys.path if p != str(ROOT / "bench")]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.api_latency import part_api_latency  # noqa: E402
from bench.common import RESULTS_PATH, T0, BenchConfig, BenchError, Results, log  # noqa: E402
from bench.floor import part_floor  # noqa: E402
from bench.ledger import part_ledger  # noqa: E402
from bench.memory import part_memory  # noqa: E402
from bench.mixed import part_mixed  # noqa: E402
from bench.mixed_ab import part_mixed_ab  # noqa: E402
from bench.persistence import part_persistence  # noqa: E402
from bench.stack import Stack, start_stack  # noqa: E402
from bench.topup import part_topup  # noqa: E402

PARTS: dict[str, tuple[str, Callable[[Stack, BenchConfig, Results], Awaitable[None]]]] = {
    "a": ("Temporal floor", part_floor),
    "b": ("top-up end to end", part_topup),
    "c": ("ledger and pgbench", part_ledger),
    "d": ("API flow-start latency", part_api_latency),
    "e": ("worker memory", part_memory),
    "m": ("mixed load, open loop, on separate processes", part_mixed),
    "p": ("Temporal dev server persistence (floor per SQLite setting)", part_persistence),
}


def part_time_limit(name: str, cfg: BenchConfig) -> float:
    return {"a": 120 + cfg.floor_n * 5, "b": 120 + cfg.topup_n * 10,
            "c": 900 + 4 * cfg.ledger_seconds + cfg.pgbench_seconds,
            "d": 120 + cfg.api_m, "e": 300 + cfg.memory_k * 0.15,
            "m": 300 + 9 * cfg.mixed_seconds, "p": 600}[name]


async def main_async(cfg: BenchConfig, res: Results) -> None:
    async with AsyncExitStack() as stack:
        st = await start_stack(stack, cfg)
        res.meta.update(st.meta)
        for name in cfg.parts:
            title, part = PARTS[name]
            if name == "m" and cfg.mixed_variant:
                title, part = "A/B of one change under the mixed load", part_mixed_ab
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
        issue_targets(res)
        log("shutting down …")
    log("stack shut down")


def issue_targets(res: Results) -> None:
    """The targets of issue 16 over figures the parts report (their own targets are older)."""
    def ratio(num: str, den: str) -> float | None:
        n, d = res.value(num), res.value(den)
        return n / d if n is not None and d else None

    pairs = [("topup_over_skeleton", "(t) top-up e2e mean / its Temporal skeleton's",
              ratio("topup_mean_ms", "skeleton_mean_ms"), ("<=", 1.5)),
             ("topup_over_skeleton_proposed", "(t) the same (proposed, bench/README.md)",
              ratio("topup_mean_ms", "skeleton_mean_ms"), ("<=", 2.0)),
             ("ledger_over_pgbench", "(t) ledger / pgbench", res.value(
                 "ratio_ledger_over_pgbench"), (">=", 1.0)),
             ("hot_over_pgbench", "(t) hot wallet / pgbench", res.value(
                 "ratio_hot_over_pgbench"), (">=", 0.75))]
    for key, label, value, target in pairs:
        if value is not None:
            res.add(key, label, value, "", target)


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small N everywhere (~2 minutes)")
    p.add_argument("--parts", "--part", default="abcdem",
                   help="which parts to run, e.g. 'ab', 'c,e' or 'mixed' (= m)")
    p.add_argument("--stack", choices=("file", "file-plain", "memory"), default="file",
                   help="the Temporal dev server: file-backed as scripts/dev.py starts it "
                        "(default), the same without its SQLite pragmas, or in memory")
    p.add_argument("--mixed-seconds", type=float, help="each open-loop window of m (30; 12)")
    p.add_argument("--mixed-variant", default="",
                   help="m: A/B of the processes' environment K=V,… (e.g. LOG_LEVEL=WARNING) "
                        "against the baseline, instead of the saturation search")
    p.add_argument("--mixed-rate", type=float, default=0.0,
                   help="m's A/B: offered flows/s (default half the floor)")
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
    parts = "".join(c for c in a.parts.lower().replace("mixed", "m") if c.isalnum())
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
        warmup=2 if q else 3, stack=a.stack, mixed_variant=a.mixed_variant,
        mixed_rate=a.mixed_rate,
        mixed_seconds=a.mixed_seconds or (12.0 if q else 30.0))


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
