"""A worker killed with SIGKILL — while a top-up waits for payment, and while it posts to the
ledger — is restarted, and every flow completes with its money moved exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from contracts.ledger import AccountRef
from db.ledger import LedgerRepository
from tests.conftest import STRIPE_KEY, WEBHOOK_SECRET
from tests.support import balances, count_rows, eventually, tenant_transfers, topup, wait_state
from tests.test_withdrawals import onboard

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """`python worker.py` — exactly what production runs — on its own task queue."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT,
                                         env=self.env, stdout=subprocess.DEVNULL, stderr=log)

    def ensure_running(self) -> None:
        """A test that failed half-way may have left the worker killed."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
async def crash_setup(start_api, database_url, temporal_address, standin, api, tmp_path_factory):
    queue = f"walletflow-crash-{secrets.token_hex(4)}"
    env = {**os.environ, "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": temporal_address,
           "TEMPORAL_TASK_QUEUE": queue, "STRIPE_API_KEY": STRIPE_KEY,
           "STRIPE_API_BASE": standin.url, "STRIPE_CHECKOUT_BASE": standin.url,
           "STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET, "STRIPE_TIMEOUT_SECONDS": "2",
           "DB_POOL_SIZE": "3", "RUN_DISPATCHER": "false",
           "WORKER_HEALTH_ADDRESS": f"127.0.0.1:{free_port()}", "LOG_FORMAT": "json",
           "WORKER_METRICS_ADDRESS": f"127.0.0.1:{free_port()}"}
    worker = WorkerProcess(env, tmp_path_factory.mktemp("worker") / "worker.log")
    worker.start()
    server = await start_api(temporal_task_queue=queue)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        yield client, worker
    worker.stop()


async def test_killed_while_waiting_for_payment(crash_setup, stripe_ctl, sessions,
                                                tenant) -> None:
    client, worker = crash_setup
    worker.ensure_running()
    r = await topup(client, tenant, "crash-wait", amount="30.00", currency="EUR")
    assert r.status_code == 201, r.text
    worker.kill()
    # Paid while no worker runs: the webhook's signal is stored in the workflow's history.
    await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}"
                          "/succeed")
    await asyncio.sleep(1)
    assert (await balances(client, tenant)) == {}
    worker.start()
    await wait_state(client, tenant, r.json()["flow_id"], "completed", within=60)
    assert (await balances(client, tenant))[("user_wallet", "EUR")]["posted"] == "30.00"
    assert await tenant_transfers(sessions, tenant) == 1


async def test_killed_while_posting_to_the_ledger(crash_setup, stripe_ctl, sessions,
                                                  tenant) -> None:
    client, worker = crash_setup
    worker.ensure_running()
    r = await topup(client, tenant, "crash-post", amount="40.00", currency="EUR")
    assert r.status_code == 201, r.text
    # Hold the wallet's row lock so the posting activity blocks inside its transaction.
    async with sessions() as blocker:
        account = await LedgerRepository(blocker).account_id(
            tenant.id, AccountRef("user_wallet", tenant.user_id, "EUR"))
        await blocker.commit()
        await blocker.execute(text("SELECT id FROM accounts WHERE id = :id FOR UPDATE"),
                              {"id": account})
        await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}"
                              "/succeed")

        async def waiting_on_lock() -> int:
            async with sessions() as s:
                return (await s.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%ledger_post%'"))).scalar_one()

        await eventually(waiting_on_lock, lambda n: n >= 1, within=30)
        worker.kill()  # mid-statement: the worker is gone, its ledger statement still waits
        assert await tenant_transfers(sessions, tenant) == 0
        await blocker.rollback()
    # The posting is one autocommit statement: it completes on its own once the lock is free.
    await eventually(lambda: tenant_transfers(sessions, tenant), lambda n: n == 1, within=30)
    worker.start()
    # The activity attempt is retried after its start-to-close timeout; its key is found, so
    # the retry moves nothing.
    await wait_state(client, tenant, r.json()["flow_id"], "completed", within=90)
    assert (await balances(client, tenant))[("user_wallet", "EUR")]["posted"] == "40.00"
    assert await tenant_transfers(sessions, tenant) == 1


async def test_killed_between_hold_and_capture(crash_setup, stripe_ctl, sessions,
                                               tenant) -> None:
    from tests.test_orders import fund

    client, worker = crash_setup
    worker.ensure_running()
    await fund(sessions, tenant, 3000)
    r = await client.post("/v1/orders", json={
        "order_id": "crash-order", "user_id": tenant.user_id, "amount": "50.00",
        "currency": "EUR", "method": "split", "wallet_amount": "30.00"},
        headers={**tenant.client, "Idempotency-Key": "crash-order"})
    assert (r.status_code, r.json()["state"]) == (201, "awaiting_payment"), r.text
    worker.kill()  # the wallet part is held, the card part not paid yet
    await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}"
                          "/succeed")
    worker.start()

    async def status() -> str:
        return (await client.get("/v1/orders/crash-order", headers=tenant.client)).json()["status"]
    await eventually(status, lambda s: s == "paid", within=60)
    wallet = (await balances(client, tenant))[("user_wallet", "EUR")]
    assert (wallet["posted"], wallet["pending_out"]) == ("0.00", "0.00")
    captured = await count_rows(sessions, "SELECT count(*) FROM transfers WHERE tenant_id = :t "
                                "AND kind = 'order_payment' AND state = 'posted'", t=tenant.id)
    assert captured == 2  # the wallet hold, posted once, and the card part


async def test_killed_after_approval_before_payout(crash_setup, stripe_ctl, sessions,
                                                   tenant) -> None:
    from tests.test_orders import fund

    client, worker = crash_setup
    worker.ensure_running()
    await fund(sessions, tenant, 10000)
    await onboard(client, stripe_ctl, tenant, tenant.user_id)  # the payee's Stripe account
    r = await client.post("/v1/withdrawals", json={
        "user_id": tenant.user_id, "amount": "25.00", "currency": "EUR",
        "method": "bank_transfer"},
        headers={**tenant.client, "Idempotency-Key": "crash-withdrawal"})
    assert r.json()["state"] == "awaiting_approval", r.text
    flow_id = r.json()["flow_id"]
    # The first payout call hangs past the client's timeout, so the worker dies mid-call.
    await stripe_ctl.post("/_standin/faults", json={
        "operation": "payouts.create", "mode": "timeout", "delay_seconds": 4, "count": 1,
        "match": {"flow_id": flow_id}})
    r = await client.post(f"/v1/withdrawals/{flow_id}/approve", json={}, headers=tenant.admin)
    assert r.status_code == 200, r.text

    async def calls() -> list:
        return (await stripe_ctl.get("/_standin/calls", params={
            "operation": "payouts.create", "flow_id": flow_id})).json()["data"]
    await eventually(calls, lambda c: len(c) >= 1, within=30)
    worker.kill()
    worker.start()

    async def payouts() -> list:
        return (await stripe_ctl.get("/_standin/payouts", params={"flow_id": flow_id})
                ).json()["data"]
    [payout] = await eventually(payouts, lambda p: len(p) == 1, within=60)
    await stripe_ctl.post(f"/_standin/payouts/{payout['id']}/paid")

    async def status() -> str:
        return (await client.get(f"/v1/withdrawals/{flow_id}", headers=tenant.admin)
                ).json()["state"]
    await eventually(status, lambda s: s == "paid", within=60)
    real = [c for c in await calls() if not c["fault"] and not c["replayed"]]
    assert len(real) == 1  # exactly one payout created at the gateway
    assert len(await payouts()) == 1


async def test_the_worker_reports_readiness_metrics_and_logs_json(crash_setup, stripe_ctl,
                                                                   tenant) -> None:
    client, worker = crash_setup
    worker.ensure_running()
    probes = f"http://{worker.env['WORKER_HEALTH_ADDRESS']}"
    async with httpx.AsyncClient(base_url=probes, timeout=5) as http:
        async def ready() -> httpx.Response | None:
            try:
                return await http.get("/readyz")
            except httpx.TransportError:
                return None
        r = await eventually(ready, lambda r: r is not None and r.status_code == 200, within=60)
        assert r is not None and r.json()["checks"] == {
            "worker": "ok", "postgres": "ok", "temporal": "ok"}
        assert (await http.get("/healthz")).status_code == 200
        worker.kill()
        assert await ready() is None  # a dead worker answers nothing, so it is not ready
        worker.start()
        await eventually(ready, lambda r: r is not None and r.status_code == 200, within=60)
    # Its Prometheus endpoint: the SDK's metrics and ours, moving as a flow runs.
    r = await topup(client, tenant, "metrics-1", amount="3.00", currency="EUR")
    await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}"
                          "/succeed")
    await wait_state(client, tenant, r.json()["flow_id"], "completed", within=60)
    async with httpx.AsyncClient(timeout=5) as http:
        text_ = (await http.get(f"http://{worker.env['WORKER_METRICS_ADDRESS']}/metrics")).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text_) for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return sum(v for (n, lbl), v in samples.items() if n.startswith(name)
                   and all(dict(lbl).get(k) == x for k, x in labels.items()))
    assert value("walletflow_flows_started", kind="TopUpWorkflow") >= 1, text_[:3000]
    assert value("walletflow_flows_finished", kind="TopUpWorkflow", outcome="completed") >= 1
    assert value("walletflow_ledger_transfers", state="posted") >= 1
    assert value("temporal_workflow_completed") >= 1  # the SDK's own
    # What the real worker wrote during this module: JSON lines, the flows' ids on them.
    records = [json.loads(line) for line in worker.log.read_text().splitlines() if line]
    assert records and all(r["service"] == "worker" for r in records)
    flows = {r["flow_id"] for r in records if r.get("logger") == "activities.ledger"}
    assert r.json()["flow_id"] in flows, flows
