"""(m) The same offered load without walletflow's code: the top-up's Temporal skeleton
(bench/floor.py `SkeletonWorkflow`: update-with-start answered by a no-op local activity, a
signal, a second no-op local activity) offered open loop at the mixed windows' rates, on the
same Temporal server, its worker in the bench process as the floor's. Its start → checkout
and signal → result percentiles are the least a top-up's flow start and paid → credited can
take at that load on this machine: the latency targets are read against them."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from bench.common import log
from bench.floor import SkeletonWorkflow, noop_activity
from bench.openloop import open_loop
from bench.procs import ProcCpu

PHASES = ("start", "paid_to_done", "done")


class SkeletonLoad:
    """Skeleton flows on their own task queue; ``window`` offers them open loop."""

    def __init__(self, client: Client, run_id: str):
        self.client, self.run_id = client, run_id
        self.queue = f"bench-mskel-{run_id}"
        self.seq = 0

    def worker(self) -> Worker:
        return Worker(self.client, task_queue=self.queue, workflows=[SkeletonWorkflow],
                      activities=[noop_activity])

    async def one(self, _kind: str, scheduled: float) -> dict[str, float]:
        """Phases from the arrival's scheduled time, as bench/mixed.py's top-up: ``start``
        (→ the update answered), ``paid_to_done`` (the signal sent → the result), ``done``."""
        self.seq += 1
        start = WithStartWorkflowOperation(
            SkeletonWorkflow.run, id=f"bench-mskel-{self.run_id}-{self.seq}",
            task_queue=self.queue, id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            execution_timeout=timedelta(seconds=120))
        await self.client.execute_update_with_start_workflow(SkeletonWorkflow.checkout,
                                                             start_workflow_operation=start)
        answered = time.perf_counter()
        handle = await start.workflow_handle()
        await handle.signal(SkeletonWorkflow.payment_event)
        await handle.result()
        done = time.perf_counter()
        return {"start": answered - scheduled, "paid_to_done": done - answered,
                "done": done - scheduled}

    async def window(self, flows_per_s: float, seconds: float, label: str,
                     procs: dict[str, Any]) -> dict[str, Any]:
        cpu = ProcCpu(procs)
        win = await open_loop(flows_per_s, seconds, [("skeleton", 1.0)], self.one,
                              seed=len(label), drain=max(30.0, seconds))
        out = win.summary(grace=max(0.25, 0.02 * seconds))
        out["cpu_s"] = cpu.stop()
        out["label"], out["flows_per_s_offered"] = label, round(flows_per_s, 2)
        row = out["kinds"].get("skeleton", {})
        log(f"(m) {label}: offered {flows_per_s:.1f} skeletons/s, completed "
            f"{row.get('completed', 0)}/{row.get('offered', 0)}, errors "
            f"{sum(out['errors'].values())}; p50/p99 ms " + ", ".join(
                f"{p} {row[p]['p50_ms']:.0f}/{row[p]['p99_ms']:.0f}" for p in PHASES if p in row))
        return out


def skeleton_p99(w: dict[str, Any] | None, phase: str) -> float | None:
    row = (w or {}).get("kinds", {}).get("skeleton", {}).get(phase)
    return None if row is None else float(row["p99_ms"])
