"""(p) The Temporal dev server's persistence: the 3-activity floor (32 starters) on fresh dev
servers side by side in one run — in memory, file-backed as scripts/dev.py used to start it
(SQLite's defaults: a rollback journal, fsync on every commit), with WAL only (still an fsync
per commit), and with WAL + synchronous=normal (devstack.SQLITE_PRAGMAS: fsync at checkpoints)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.common import STATE_DIR, BenchConfig, Results, log
from bench.floor import FloorRunner, FloorWorkflow, noop_activity
from bench.procs import temporal_process
from bench.stack import Stack, binary, remove_files
from bench.stats import CpuWindow, latency_stats, run_concurrent
from devstack import SQLITE_PRAGMAS, sqlite_args
from temporal_client import dev_server_args

STARTERS = 32
MODES: dict[str, tuple[str, ...] | None] = {
    "memory": None,
    "file": (),
    "file+wal": ("journal_mode=wal",),
    "file+wal+normal": SQLITE_PRAGMAS,
}


async def floor_on(mode: str, pragmas: tuple[str, ...] | None, total: int) -> dict[str, Any]:
    run_id = secrets.token_hex(4)
    db_file = None if pragmas is None else STATE_DIR / f"temporal-p-{run_id}.db"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        dev_server_startup_timeout=timedelta(seconds=90),
        dev_server_extra_args=[*dev_server_args(), *sqlite_args(pragmas or ())],
        dev_server_database_filename=str(db_file) if db_file else None)
    try:
        runner = FloorRunner(env.client, run_id, f"bench-p-{run_id}")
        async with Worker(env.client, task_queue=runner.queue, workflows=[FloorWorkflow],
                          activities=[noop_activity]):
            await run_concurrent(STARTERS, STARTERS, lambda _w, i: runner.one("warm", i))
            server = temporal_process(env.client.service_client.config.target_host)
            window = CpuWindow(**({"temporal": server} if server else {}))
            lat, wall = await run_concurrent(STARTERS, total,
                                             lambda _w, i: runner.one("conc", i))
            cpu = window.stop()
    finally:
        await env.shutdown()
        if db_file:
            remove_files(db_file)
    out = {"wps": total / wall, **latency_stats(lat), "cpu": cpu}
    log(f"(p) floor, Temporal dev server {mode}: {out['wps']:.1f} wf/s, p50 "
        f"{out['p50_ms']:.0f} ms; Temporal CPU {cpu.get('temporal_cpu_pct', 0):.0f}% "
        f"of a core, machine {cpu['machine_cpu_pct']:.0f}%")
    return out


async def part_persistence(st: Stack, cfg: BenchConfig, res: Results) -> None:
    total = 128 if cfg.quick else 400
    floors = {mode: await floor_on(mode, pragmas, total) for mode, pragmas in MODES.items()}
    res.details["persistence"] = {"workflows": total, "starters": STARTERS, "floors": floors}
    memory = floors["memory"]["wps"]
    for mode, f in floors.items():
        res.add(f"persistence_{mode}_wps", f"(p) floor, 32 starters, dev server {mode}",
                f["wps"], "wf/s")
    res.add("persistence_devstack_over_memory", "(p) floor: file+wal+normal / memory",
            floors["file+wal+normal"]["wps"] / memory, "")
