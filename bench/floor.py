"""(a) The Temporal floor: a workflow running 3 no-op activities, end to end, sequentially and
with 32 concurrent starters; then, informational, the top-up's Temporal skeleton."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from bench.common import CONCURRENT_STARTERS, BenchConfig, BenchError, Results, log
from bench.stack import Stack
from bench.stats import CpuWindow, fmt_cpu, fmt_stats, latency_stats, run_concurrent

SKELETON_MODES = ("update_with_start", "eager_start_then_update")


@activity.defn(name="bench.noop")
async def noop_activity(step: int) -> int:
    return step


# Outside the sandbox: the sandbox re-executes a workflow's module for every run, and for this
# module that would add ~20 ms per run that is the bench's cost, not Temporal's. TopUpWorkflow
# runs sandboxed, as in production.
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


@dataclass
class FloorRunner:
    """Runs one floor workflow or one skeleton on the part's own task queue."""

    client: Client
    run_id: str
    queue: str

    async def one(self, tag: str, i: int) -> float:
        started = time.perf_counter()
        await self.client.execute_workflow(
            FloorWorkflow.run, id=f"bench-floor-{self.run_id}-{tag}-{i}", task_queue=self.queue,
            execution_timeout=timedelta(seconds=60))
        return time.perf_counter() - started

    async def skeleton(self, tag: str, i: int, eager: bool = False) -> tuple[float, float]:
        """(start → checkout answered, signal → result) for one SkeletonWorkflow run."""
        wf_id = f"bench-skeleton-{self.run_id}-{tag}-{i}"
        started = time.perf_counter()
        if eager:  # a plain start, the first task handed straight to this worker, then the update
            handle = await self.client.start_workflow(
                SkeletonWorkflow.run, id=wf_id, task_queue=self.queue, request_eager_start=True)
            if not getattr(handle, "__temporal_eagerly_started", False):
                raise BenchError("the server did not start the skeleton eagerly")
            await handle.execute_update(SkeletonWorkflow.checkout)
        else:
            start = WithStartWorkflowOperation(SkeletonWorkflow.run, id=wf_id,
                                               task_queue=self.queue,
                                               id_conflict_policy=WorkflowIDConflictPolicy.FAIL)
            await self.client.execute_update_with_start_workflow(SkeletonWorkflow.checkout,
                                                                 start_workflow_operation=start)
            handle = await start.workflow_handle()
        answered = time.perf_counter()
        await handle.signal(SkeletonWorkflow.payment_event)
        await handle.result()
        return answered - started, time.perf_counter() - answered


async def measure_floor(runner: FloorRunner, cfg: BenchConfig, res: Results) -> None:
    for i in range(cfg.warmup):
        await runner.one("warm", i)
    seq = [await runner.one("seq", i) for i in range(cfg.floor_n)]
    total = cfg.floor_n * 4
    window = CpuWindow()
    conc, wall = await run_concurrent(CONCURRENT_STARTERS, total,
                                      lambda _w, i: runner.one("conc", i))
    cpu = window.stop()
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


async def measure_skeletons(runner: FloorRunner, cfg: BenchConfig
                            ) -> dict[str, list[tuple[float, float]]]:
    skeletons: dict[str, list[tuple[float, float]]] = {}
    for mode in SKELETON_MODES:
        eager = mode.startswith("eager")
        for i in range(cfg.warmup):
            await runner.skeleton(f"warm-{mode}", i, eager=eager)
        skeletons[mode] = [await runner.skeleton(mode, i, eager=eager)
                           for i in range(cfg.floor_n)]
    return skeletons


def report_skeletons(skeletons: dict[str, list[tuple[float, float]]], res: Results) -> None:
    details: dict[str, Any] = {}
    res.details["topup_skeleton"] = details
    for mode, runs in skeletons.items():
        answer = latency_stats([a for a, _ in runs])
        finish = latency_stats([b for _, b in runs])
        whole = latency_stats([a + b for a, b in runs])
        log(f"(a) top-up skeleton ({mode.replace('_', ' ')}; no-op local activities, no HTTP, "
            f"no database): start → checkout {fmt_stats(answer)}; signal → result "
            f"{fmt_stats(finish)}; together mean {whole['mean_ms']:.1f} ms")
        details[mode] = {"checkout": answer, "signal_to_result": finish, "total": whole}
    mean = details["update_with_start"]["total"]["mean_ms"]
    res.add("skeleton_mean_ms", "(a) top-up's Temporal skeleton, mean", mean, "ms")


async def part_floor(st: Stack, cfg: BenchConfig, res: Results) -> None:
    runner = FloorRunner(st.temporal.client, st.run_id, f"bench-floor-{st.run_id}")
    async with Worker(runner.client, task_queue=runner.queue,
                      workflows=[FloorWorkflow, SkeletonWorkflow], activities=[noop_activity]):
        await measure_floor(runner, cfg, res)
        skeletons = await measure_skeletons(runner, cfg)
    report_skeletons(skeletons, res)
