"""The soak's stack, each part its own process as in production: one PostgreSQL (a fresh
database on DATABASE_URL's server, or an embedded PostgreSQL of its own), one Temporal dev
server, the Stripe stand-in (`python -m stripe_standin`), two APIs (uvicorn) and two workers
(`python worker.py`, each with the outbox dispatcher), all on one task queue; and the killer
that SIGKILLs a worker every so often and starts it again."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from bench.common import ROOT, BenchError, log
from bench.stack import binary, database_url
from db.engine import async_url, create_engine, embedded_postgres_url
from db.maintenance import create_database, drop_database
from db.migrate import upgrade_async
from temporal_client import dev_server_args

TASK_QUEUE = "walletflow-soak"
STRIPE_KEY = "sk_test_walletflow_soak"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Proc:
    """One child process, restartable, its output appended to ``log``."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen([sys.executable, *self.args], cwd=ROOT, env=self.env,
                                          stdout=out, stderr=subprocess.STDOUT)
        self.starts += 1

    def kill(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    async def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                await asyncio.to_thread(self.popen.wait, 20)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class SoakStack:
    db_url: str
    temporal: WorkflowEnvironment
    temporal_address: str
    standin_url: str
    api_urls: list[str]
    env: dict[str, str]
    workers: list[Proc]
    kills: int = 0
    procs: list[Proc] = field(default_factory=list)


async def start_database(stack: AsyncExitStack, state: Path) -> str:
    """A fresh, migrated database: on DATABASE_URL's server, else on an embedded PostgreSQL
    under ``state`` (stopped when the last process using it exits)."""
    base = os.environ.get("DATABASE_URL")
    if base:
        admin_url = async_url(base)
    else:
        log(f"starting an embedded PostgreSQL under {state} …")
        admin_url = await asyncio.to_thread(embedded_postgres_url, state, "postgres", False)
    name = f"walletflow_soak_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, 1)
    stack.push_async_callback(admin.dispose)
    await create_database(admin, name)
    stack.push_async_callback(drop_database, admin, name)
    url = database_url(admin_url, name)
    await upgrade_async(url)
    return url


async def start_temporal(stack: AsyncExitStack) -> WorkflowEnvironment:
    log("starting the Temporal dev server …")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        dev_server_startup_timeout=timedelta(seconds=120),
        dev_server_extra_args=dev_server_args())
    stack.push_async_callback(env.shutdown)
    return env


def service_env(db_url: str, temporal_address: str, standin_url: str, secret: str
                ) -> dict[str, str]:
    """What the APIs and the workers are started with (the configuration variables)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WALLETFLOW_FAULT", "TEMPORAL_", "STRIPE_"))}
    return {**env, "WALLETFLOW_ENV": "development", "DATABASE_URL": db_url,
            "TEMPORAL_ADDRESS": temporal_address, "TEMPORAL_TASK_QUEUE": TASK_QUEUE,
            "STRIPE_API_KEY": STRIPE_KEY, "STRIPE_API_BASE": standin_url,
            "STRIPE_CHECKOUT_BASE": standin_url, "STRIPE_WEBHOOK_SECRETS": secret,
            "DB_POOL_SIZE": "5", "RATE_LIMIT_DEFAULT": "100000/second",
            "LOG_FORMAT": "json", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}


async def wait_ready(url: str, what: str, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise BenchError(f"{what} was not ready at {url} within {within:.0f}s")


def _register(stack: AsyncExitStack, proc: Proc) -> Proc:
    proc.start()
    stack.push_async_callback(proc.stop)
    return proc


async def start_services(stack: AsyncExitStack, state: Path, db_url: str,
                         temporal_address: str) -> tuple[str, list[str], dict[str, str],
                                                         list[Proc], list[Proc]]:
    """The stand-in, two APIs and two workers: (stand-in URL, API URLs, env, workers, all)."""
    secret = "whsec_soak_" + secrets.token_hex(8)
    sport, ports = free_port(), [free_port(), free_port()]
    standin_url = f"http://127.0.0.1:{sport}"
    api_urls = [f"http://127.0.0.1:{p}" for p in ports]
    env = service_env(db_url, temporal_address, standin_url, secret)
    procs = [_register(stack, Proc("stripe-standin", [
        "-m", "stripe_standin", "--port", str(sport), "--webhook-url",
        f"{api_urls[0]}/v1/webhooks/stripe", "--webhook-secret", secret,
        "--auto-succeed-refunds", "--auto-pay-payouts", "--log-level", "warning"],
        env, state / "stripe-standin.log"))]
    for n, port in enumerate(ports, 1):
        procs.append(_register(stack, Proc(f"api-{n}", [
            "-m", "uvicorn", "--factory", "api.app:app_factory", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"], env, state / f"api-{n}.log")))
    workers = []
    for n in (1, 2):
        wenv = {**env, "WORKER_HEALTH_ADDRESS": f"127.0.0.1:{free_port()}"}
        workers.append(_register(stack, Proc(f"worker-{n}", ["worker.py"], wenv,
                                             state / f"worker-{n}.log")))
    await wait_ready(f"{standin_url}/_standin/config", "the stand-in")
    for url in api_urls:
        await wait_ready(f"{url}/readyz", "an API")
    for w in workers:
        await wait_ready(f"http://{w.env['WORKER_HEALTH_ADDRESS']}/readyz", w.name)
    return standin_url, api_urls, env, workers, procs + workers


async def start_soak_stack(stack: AsyncExitStack, state: Path) -> SoakStack:
    started = time.perf_counter()
    await asyncio.to_thread(state.mkdir, parents=True, exist_ok=True)
    db_url = await start_database(stack, state)
    env = await start_temporal(stack)
    address = env.client.service_client.config.target_host
    standin_url, api_urls, svc_env, workers, procs = await start_services(
        stack, state, db_url, address)
    log(f"stack up in {time.perf_counter() - started:.1f}s: Temporal {address}, stand-in "
        f"{standin_url}, APIs {' '.join(api_urls)}, 2 workers; logs in {state}")
    return SoakStack(db_url, env, address, standin_url, api_urls, svc_env, workers,
                     procs=procs)


async def killer(soak: SoakStack, every: float, stop: asyncio.Event) -> None:
    """SIGKILL worker 1, 2, 1, … every ``every`` seconds and start it again at once."""
    n = 0
    while True:
        try:
            await asyncio.wait_for(stop.wait(), every)
            return
        except TimeoutError:
            pass
        victim = soak.workers[n % len(soak.workers)]
        victim.kill()
        victim.start()
        soak.kills += 1
        n += 1
        log(f"killed {victim.name} (kill {soak.kills}); restarted")


def check_alive(soak: SoakStack) -> list[str]:
    """The processes that died on their own (a worker the killer killed is restarted)."""
    return [f"{p.name} exited with {p.popen.returncode if p.popen else None}; see {p.log}"
            for p in soak.procs if not p.alive()]
