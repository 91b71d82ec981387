"""Test support: running ASGI apps under uvicorn inside the test event loop, tenants, polling."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.tenants import TenantRepository
from db.users import UserRepository

T = TypeVar("T")


class LiveServer:
    """An ASGI app served by uvicorn on a free loopback port, in the running event loop."""

    def __init__(self, app: Any):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                    log_level="warning", lifespan="on"))
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> LiveServer:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task:
            await self.task


_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Tenant:
    id: str
    slug: str
    client_key: str
    admin_key: str
    user_id: str

    @property
    def client(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.client_key}"}

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}


async def create_tenant(sessions: async_sessionmaker[AsyncSession], prefix: str = "t") -> Tenant:
    slug = f"{prefix}-{secrets.token_hex(5)}"
    async with sessions.begin() as session:
        tenants = TenantRepository(session)
        tenant_id = await tenants.create_tenant(slug, f"Tenant {slug}")
        client_key = await tenants.create_key(tenant_id, ["client"], "shop-backend")
        admin_key = await tenants.create_key(tenant_id, ["admin"], "admin-alice")
        await UserRepository(session).create(tenant_id, "user-1", "user1@example.com")
    return Tenant(tenant_id, slug, client_key, admin_key, "user-1")


async def eventually(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool],
                     within: float = 20.0, interval: float = 0.1) -> T:
    """Poll ``probe`` until ``check`` holds; fail with the last value seen."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value: {value!r}")
        await asyncio.sleep(interval)


async def count_rows(sessions: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> int:
    async with sessions() as session:
        return int((await session.execute(text(sql), params)).scalar_one())


async def topup(http: Any, tenant: Tenant, key: str, **body: Any) -> Any:
    body.setdefault("user_id", tenant.user_id)
    return await http.post("/v1/topups", json=body,
                           headers={**tenant.client, "Idempotency-Key": key})


async def flow_status(http: Any, tenant: Tenant, flow_id: str) -> dict[str, Any]:
    r = await http.get(f"/v1/flows/{flow_id}", headers=tenant.client)
    assert r.status_code == 200, r.text
    return r.json()


async def _status_or_unavailable(http: Any, tenant: Tenant, flow_id: str) -> dict[str, Any]:
    """The flow's status; while no worker answers its query (e.g. one was just killed) the API
    says 503 with Retry-After, which a caller retries."""
    r = await http.get(f"/v1/flows/{flow_id}", headers=tenant.client)
    if r.status_code == 503 and "retry-after" in r.headers:
        return {"state": "unavailable"}
    assert r.status_code == 200, r.text
    return r.json()


async def wait_state(http: Any, tenant: Tenant, flow_id: str, state: str,
                     within: float = 30.0) -> dict[str, Any]:
    return await eventually(lambda: _status_or_unavailable(http, tenant, flow_id),
                            lambda s: s["state"] == state, within=within)


async def balances(http: Any, tenant: Tenant, user_id: str | None = None
                   ) -> dict[tuple[str, str], dict[str, str]]:
    r = await http.get(f"/v1/wallets/{user_id or tenant.user_id}", headers=tenant.client)
    assert r.status_code == 200, r.text
    return {(b["account"], b["currency"]): b for b in r.json()["balances"]}


async def tenant_transfers(sessions: async_sessionmaker[AsyncSession], tenant: Tenant) -> int:
    return await count_rows(sessions, "SELECT count(*) FROM transfers WHERE tenant_id = :t",
                            t=tenant.id)


async def set_rewards(sessions: async_sessionmaker[AsyncSession], tenant: Tenant,
                      **rewards: Any) -> None:
    import json

    async with sessions.begin() as session:
        await session.execute(text(
            "UPDATE tenants SET settings = jsonb_set(settings, '{rewards}', CAST(:r AS jsonb)) "
            "WHERE id = :t"), {"r": json.dumps(rewards), "t": tenant.id})


async def run_cli(database_url: str, temporal_address: str | None, *args: str
                  ) -> tuple[int, str, str]:
    """The installed `walletflow` command, as an operator runs it (README): exit code, stdout,
    stderr."""
    import os
    import sys

    from tests.conftest import TASK_QUEUE

    root = _ROOT
    env = {**os.environ, "DATABASE_URL": database_url, "TEMPORAL_TASK_QUEUE": TASK_QUEUE}
    if temporal_address:
        env["TEMPORAL_ADDRESS"] = temporal_address
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "walletflow"), *args, cwd=root, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()
