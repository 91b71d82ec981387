"""(e) The peak RSS of a worker subprocess (`python worker.py`, its own task queue) holding K
top-ups open and awaiting payment, opened through a second in-process API by 32 clients; RSS
sampled every 0.5 s over the whole part."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import psutil

from api.app import create_app
from bench.common import (
    CONCURRENT_STARTERS,
    ROOT,
    STATE_DIR,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    BenchConfig,
    BenchError,
    Results,
    log,
)
from bench.stack import Stack, make_settings
from bench.stats import CpuWindow, fmt_cpu, run_concurrent
from bench.topup import post_topup
from tests.support import LiveServer, Tenant, create_tenant

Samples = list[tuple[float, int]]


def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


def _read_tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return ""


def process_rss(proc: psutil.Process) -> int:
    rss = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            rss += child.memory_info().rss
    return rss


async def sample_rss(pid: int, stop: asyncio.Event, samples: Samples) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            samples.append((time.perf_counter(), process_rss(proc)))
        except psutil.Error:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 30.0) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await proc.wait()
    except TimeoutError:
        log(f"worker subprocess {proc.pid} ignored SIGTERM for {grace:.0f}s: killing it")
        proc.kill()
        await proc.wait()


async def wait_for_log(path: Path, needle: str, proc: asyncio.subprocess.Process,
                       within: float) -> None:
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        if proc.returncode is not None:
            raise BenchError(f"the worker subprocess exited with {proc.returncode}:\n"
                             f"{_read_tail(path)}")
        if needle in _read_tail(path, 20000):
            return
        await asyncio.sleep(0.2)
    raise BenchError(f"the worker subprocess did not log {needle!r} within {within:.0f}s:\n"
                     f"{_read_tail(path)}")


def check_alive(proc: asyncio.subprocess.Process, log_path: Path) -> None:
    if proc.returncode is not None:
        raise BenchError(f"the worker subprocess died ({proc.returncode}):\n"
                         f"{_read_tail(log_path)}")


async def start_worker(stack: AsyncExitStack, st: Stack, queue: str, log_path: Path,
                       samples: Samples) -> asyncio.subprocess.Process:
    """The worker subprocess on ``queue``, its RSS sampled into ``samples`` until the stack
    closes; returns once it polls."""
    env = {**os.environ, "DATABASE_URL": st.db_url, "TEMPORAL_ADDRESS": st.temporal_address,
           "TEMPORAL_TASK_QUEUE": queue, "STRIPE_API_BASE": st.standin.url,
           "STRIPE_CHECKOUT_BASE": st.standin.url, "STRIPE_API_KEY": STRIPE_KEY,
           "STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET, "PYTHONUNBUFFERED": "1"}
    logfile = _open_log(log_path)
    stack.callback(logfile.close)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "worker.py"), cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=logfile, stderr=asyncio.subprocess.STDOUT)
    stack.push_async_callback(stop_process, proc)
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(proc.pid, stop_sampling, samples))

    async def stop_sampler() -> None:
        stop_sampling.set()
        await sampler

    stack.push_async_callback(stop_sampler)
    await wait_for_log(log_path, "worker polling task queue", proc, within=90)
    return proc


@dataclass
class Opener:
    """Opens top-ups (awaiting payment) through the second API while the worker lives."""

    proc: asyncio.subprocess.Process
    log_path: Path
    clients: list[httpx.AsyncClient]
    tenant: Tenant
    k: int
    deadline: float
    opened: int = 0
    retried: int = 0

    async def open_one(self, w: int, i: int) -> float:
        while True:
            check_alive(self.proc, self.log_path)
            if time.perf_counter() > self.deadline:
                raise BenchError(f"only {self.opened}/{self.k} top-ups opened before the deadline")
            r = await post_topup(self.clients[w], self.tenant, f"mem-{i}", "3.00")
            if r.status_code == 201:
                self.opened += 1
                return 0.0
            if r.status_code == 202:  # the checkout wait ran out: the flow goes on, ask again
                self.retried += 1
                await asyncio.sleep(0.5)
                continue
            raise BenchError(f"POST /v1/topups answered {r.status_code}: {r.text[:300]}")

    async def progress(self, samples: Samples) -> None:
        began = time.perf_counter()
        while True:
            await asyncio.sleep(15)
            rss = samples[-1][1] / 2**20 if samples else math.nan
            rate = self.opened / (time.perf_counter() - began)
            eta = f", ~{(self.k - self.opened) / rate:.0f}s to go" if rate else ""
            log(f"(e) … {self.opened}/{self.k} open ({rate:.1f}/s{eta}), worker RSS {rss:.0f} MB")

    async def open_all(self, samples: Samples) -> tuple[float, dict[str, float]]:
        """Open the K top-ups on 32 clients: (wall time, CPU split)."""
        reporter = asyncio.create_task(self.progress(samples))
        window = CpuWindow(worker=psutil.Process(self.proc.pid))
        try:
            _, open_wall = await run_concurrent(CONCURRENT_STARTERS, self.k, self.open_one)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        return open_wall, window.stop()

    async def spot_check(self) -> None:
        """The flows really wait for payment (queries replay evicted flows)."""
        for i in random.Random(1).sample(range(self.k), min(self.k, 20)):
            flow_id = f"{self.tenant.slug}:topup:mem-{i}"
            r = await self.clients[0].get(f"/v1/flows/{flow_id}", headers=self.tenant.client)
            if r.status_code != 200 or r.json()["state"] != "awaiting_payment":
                raise BenchError(f"flow {flow_id}: {r.status_code} {r.text[:300]}")


async def start_opener(stack: AsyncExitStack, st: Stack, queue: str,
                       proc: asyncio.subprocess.Process, log_path: Path, k: int) -> Opener:
    """A second API on ``queue`` and 32 clients of it."""
    api2 = await LiveServer(create_app(make_settings(
        st.db_url, st.temporal_address, st.standin.url, temporal_task_queue=queue))).start()
    stack.push_async_callback(api2.stop)
    clients_stack = await stack.enter_async_context(AsyncExitStack())
    clients = [await clients_stack.enter_async_context(
        httpx.AsyncClient(base_url=api2.url, timeout=60)) for _ in range(CONCURRENT_STARTERS)]
    tenant = await create_tenant(st.sessions, "bench-e")
    return Opener(proc, log_path, clients, tenant, k, time.perf_counter() + max(120.0, k * 0.1))


async def part_memory(st: Stack, cfg: BenchConfig, res: Results) -> None:
    k = cfg.memory_k
    queue = f"walletflow-bench-mem-{st.run_id}"
    log_path = STATE_DIR / "worker.log"  # overwritten by each run
    samples: Samples = []
    async with AsyncExitStack() as stack:
        proc = await start_worker(stack, st, queue, log_path, samples)
        await asyncio.sleep(1.0)
        baseline = samples[-1][1] if samples else process_rss(psutil.Process(proc.pid))
        log(f"(e) worker subprocess pid {proc.pid} polling {queue}; idle RSS "
            f"{baseline / 2**20:.0f} MB; opening {k} top-ups …")
        opener = await start_opener(stack, st, queue, proc, log_path, k)
        open_wall, cpu = await opener.open_all(samples)
        log(f"(e) {opener.opened} top-ups awaiting payment after {open_wall:.1f}s "
            f"({opener.opened / open_wall:.1f}/s, {opener.retried} 202-retries) {fmt_cpu(cpu)}")
        await opener.spot_check()
        await asyncio.sleep(2.0 if cfg.quick else 5.0)  # hold them open a little longer
        check_alive(proc, log_path)
    peak = max(rss for _, rss in samples) / 2**20
    final = samples[-1][1] / 2**20 if samples else math.nan
    log(f"(e) worker peak RSS {peak:.0f} MB with {k} open top-ups (idle {baseline / 2**20:.0f} "
        f"MB, {len(samples)} samples; log {log_path.relative_to(ROOT)})")
    res.details["worker_memory"] = {
        "open_topups": k, "opened": opener.opened, "retries_202": opener.retried,
        "open_seconds": open_wall, "samples": len(samples), "idle_rss_mb": baseline / 2**20,
        "peak_rss_mb": peak, "last_rss_mb": final, "task_queue": queue, "open_cpu": cpu}
    res.add("worker_peak_rss_mb", f"(e) worker peak RSS, {k:,} open top-ups", peak, "MB",
            ("<=", 250.0))
    res.add("topup_open_per_s", "(e) top-ups opened/s, 32 clients", opener.opened / open_wall,
            "flows/s")
