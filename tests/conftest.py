"""One PostgreSQL, one Temporal dev server, one Stripe stand-in, one API and one worker for the
whole session; tests isolate themselves by tenant (and by task queue where they need their own
worker)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from db.engine import async_url, create_engine, embedded_postgres_url, session_factory
from db.ledger import LedgerRepository
from db.migrate import upgrade_async
from dispatcher import Dispatcher
from settings import Settings
from temporal_client import data_converter, dev_server_args
from tests.support import LiveServer, Tenant, create_tenant
from worker import build_gateways, build_worker

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WEBHOOK_SECRET = "whsec_test_" + secrets.token_hex(8)
STRIPE_KEY = "sk_test_walletflow"
RAZORPAY_KEY_ID, RAZORPAY_KEY_SECRET = "rzp_test_walletflow", "rzp_secret_" + secrets.token_hex(8)
RAZORPAY_WEBHOOK_SECRET = "rzp_whsec_" + secrets.token_hex(8)
RAZORPAY_URL: list[str] = []  # the session's Razorpay stand-in, once started
TASK_QUEUE = "walletflow-tests"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The replay tests read the histories every other module left behind: they run last."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_replay.py"))


def _binary(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.exit(f"the {name!r} binary is missing: install the dev dependencies", 2)
    return found


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A fresh database on DATABASE_URL's server, or on an embedded PostgreSQL."""
    base = os.environ.get("DATABASE_URL")
    if base:
        admin_url = async_url(base)
    else:
        admin_url = embedded_postgres_url(ROOT / ".walletflow" / "test", "postgres",
                                          keep_running=False)
    name = f"walletflow_test_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, 1)
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    if "?" in admin_url.rsplit("/", 1)[1]:
        url += "?" + admin_url.rsplit("?", 1)[1]
    await upgrade_async(url)
    yield url
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, 10)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"),
        dev_server_startup_timeout=timedelta(seconds=90),
        dev_server_extra_args=dev_server_args(),
        data_converter=data_converter(Settings()),  # the worker's and the API's: encrypted
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    return temporal_env.client.service_client.config.target_host


@pytest.fixture(scope="session")
async def standin() -> AsyncIterator[LiveServer]:
    from stripe_standin import StandinConfig
    from stripe_standin import create_app as create_standin

    server = LiveServer(create_standin(StandinConfig(
        webhook_url=None, webhook_secrets=[WEBHOOK_SECRET],
        webhook_retry_delays=(0.2, 0.5, 1.0, 2.0))))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def razorpay_standin() -> AsyncIterator[LiveServer]:
    """The Razorpay stand-in; the API's webhook URL is set by the ``api`` fixture."""
    from razorpay_standin import RazorpayStandinConfig
    from razorpay_standin import create_app as create_razorpay

    server = LiveServer(create_razorpay(RazorpayStandinConfig(
        key_id=RAZORPAY_KEY_ID, key_secret=RAZORPAY_KEY_SECRET,
        webhook_secret=RAZORPAY_WEBHOOK_SECRET, webhook_retry_delays=(0.2, 0.5, 1.0, 2.0))))
    await server.start()
    RAZORPAY_URL[:] = [server.url]
    yield server
    await server.stop()


def make_settings(database_url: str, temporal_address: str, standin_url: str, **overrides: object
                  ) -> Settings:
    values: dict[str, object] = dict(
        database_url=database_url, temporal_address=temporal_address,
        temporal_task_queue=TASK_QUEUE, stripe_api_key=STRIPE_KEY, stripe_api_base=standin_url,
        stripe_checkout_base=standin_url, stripe_webhook_secrets=WEBHOOK_SECRET,
        stripe_timeout_seconds=2.0, db_pool_size=5,
        # Limited (every request counts, the headers are sent) but never in the way: the suite
        # and the contract test fire many requests with one key (tests/test_ratelimit.py sets
        # tiny limits where it means to).
        rate_limit_default="10000/second",
    )
    if RAZORPAY_URL:  # Razorpay configured against its stand-in
        values.update(razorpay_key_id=RAZORPAY_KEY_ID, razorpay_key_secret=RAZORPAY_KEY_SECRET,
                      razorpay_webhook_secret=RAZORPAY_WEBHOOK_SECRET,
                      razorpay_api_base=RAZORPAY_URL[0], razorpay_checkout_base=RAZORPAY_URL[0],
                      razorpay_timeout_seconds=2.0)
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(database_url: str, temporal_address: str, standin: LiveServer,
             razorpay_standin: LiveServer) -> Settings:
    return make_settings(database_url, temporal_address, standin.url)


ApiFactory = Callable[..., Awaitable[LiveServer]]


@pytest.fixture(scope="session")
async def start_api(database_url: str, temporal_address: str, standin: LiveServer,
                    razorpay_standin: LiveServer) -> AsyncIterator[ApiFactory]:
    """Start an extra API server with settings overrides (another task queue, short expiry)."""
    servers: list[LiveServer] = []

    async def start(**overrides: object) -> LiveServer:
        target = str(overrides.pop("temporal_address", temporal_address))
        app = create_app(make_settings(database_url, target, standin.url, **overrides))
        server = await LiveServer(app).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture(scope="session")
async def api(start_api: ApiFactory, standin: LiveServer,
              razorpay_standin: LiveServer) -> LiveServer:
    server = await start_api()
    async with httpx.AsyncClient(base_url=standin.url) as c:
        r = await c.put("/_standin/config", json={
            "webhook_url": f"{server.url}/v1/webhooks/stripe", "webhook_secrets": [WEBHOOK_SECRET]})
        r.raise_for_status()
    async with httpx.AsyncClient(base_url=razorpay_standin.url) as c:
        r = await c.put("/_standin/config", json={
            "webhook_url": f"{server.url}/v1/webhooks/razorpay",
            "webhook_secret": RAZORPAY_WEBHOOK_SECRET})
        r.raise_for_status()
    return server


@pytest.fixture(scope="session")
async def worker(temporal_env: WorkflowEnvironment, settings: Settings,
                 sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    gateways = build_gateways(settings)
    dispatcher = asyncio.create_task(Dispatcher(temporal_env.client, sessions, TASK_QUEUE,
                                                interval=0.2).run())
    async with build_worker(temporal_env.client, TASK_QUEUE, sessions, gateways):
        yield
    dispatcher.cancel()
    for gw in gateways.values():
        await gw.close()


@pytest.fixture
async def http(api: LiveServer, worker: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        yield client


@pytest.fixture
async def stripe_ctl(standin: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=standin.url, timeout=30) as client:
        yield client
        await client.delete("/_standin/faults")


@pytest.fixture
async def tenant(sessions: async_sessionmaker[AsyncSession]) -> Tenant:
    return await create_tenant(sessions)


@pytest.fixture(scope="module", autouse=True)
async def ledger_invariants_hold(sessions: async_sessionmaker[AsyncSession]
                                 ) -> AsyncIterator[None]:
    """After every test module, the ledger's invariants hold (`walletflow ledger check`)."""
    yield
    async with sessions() as session:
        problems = await LedgerRepository(session).check_invariants()
    assert problems == [], problems
