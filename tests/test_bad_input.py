"""Bad input gets a clear 4xx problem+json and writes nothing: no flow, no ledger row."""

from __future__ import annotations

import pytest

from tests.support import count_rows, tenant_transfers, topup

BAD_BODIES = [
    ({"amount": "0", "currency": "EUR"}, 422, "invalid_amount"),
    ({"amount": "0.00", "currency": "EUR"}, 422, "invalid_amount"),
    ({"amount": "-5.00", "currency": "EUR"}, 422, "invalid_amount"),
    ({"amount": "1.005", "currency": "EUR"}, 422, "invalid_amount"),
    ({"amount": "12abc", "currency": "EUR"}, 422, "invalid_amount"),
    ({"amount": "1e400", "currency": "EUR"}, 422, "invalid_amount"),
    ({"amount": "99999999999999.00", "currency": "EUR"}, 422, "invalid_amount"),
    ({"amount": "10.00", "currency": "XYZ"}, 422, "invalid_amount"),
    ({"amount": "10.00", "currency": "eur"}, 422, "validation_error"),
    ({"amount": "10.00"}, 422, "validation_error"),
    ({"amount": True, "currency": "EUR"}, 422, "validation_error"),
    ({"amount": "10.00", "currency": "PTS"}, 422, "invalid_currency"),
    ({"package": "gold-bars"}, 422, "unknown_package"),
    ({"amount": "10.00", "currency": "EUR", "surprise": 1}, 422, "validation_error"),
    ({"amount": "10.00", "currency": "EUR", "user_id": "nobody"}, 404, "user_not_found"),
    ({"amount": "10.00", "currency": "EUR", "user_id": "bad id!"}, 422, "validation_error"),
]


async def assert_nothing_written(sessions, tenant) -> None:
    assert await tenant_transfers(sessions, tenant) == 0
    assert await count_rows(sessions, "SELECT count(*) FROM flows WHERE tenant_id = :t",
                            t=tenant.id) == 0


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
async def test_bad_bodies_are_refused(http, sessions, tenant, body, status, code) -> None:
    r = await topup(http, tenant, "bad-1", **body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code
    await assert_nothing_written(sessions, tenant)


@pytest.mark.parametrize(("raw", "code"), [
    (b'{"user_id": "user-1", "amount": NaN, "currency": "EUR"}', "malformed_json"),
    (b'{"user_id": "user-1", "amount": Infinity, "currency": "EUR"}', "malformed_json"),
    (b'{"user_id": "user-1", "amount": 10.005, "currency": "EUR"}', "invalid_amount"),
    (b'{"user_id": "user-1", "amount": -1, "currency": "EUR"}', "invalid_amount"),
    (b'{"user_id": "user-1", "amount": 1e999, "currency": "EUR"}', "invalid_amount"),
    (b'{"user_id": "user-1", "amount": ', "malformed_json"),
    (b'[1, 2]', "validation_error"),
])
async def test_json_numbers_are_parsed_exactly(http, sessions, tenant, raw, code) -> None:
    r = await http.post("/v1/topups", content=raw, headers={
        **tenant.client, "Idempotency-Key": "raw-1", "Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert r.json()["code"] == code
    await assert_nothing_written(sessions, tenant)


async def test_exact_json_number_is_accepted(http, tenant) -> None:
    raw = b'{"user_id":"user-1","amount":89.50,"currency":"EUR"}'
    r = await http.post("/v1/topups", content=raw,
                        headers={**tenant.client, "Idempotency-Key": "num-1",
                                 "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["amount"] == "89.50"


async def test_oversized_body_is_refused(http, sessions, tenant) -> None:
    r = await http.post("/v1/topups", content=b'{"pad": "' + b"x" * 70_000 + b'"}',
                        headers={**tenant.client, "Idempotency-Key": "big-1",
                                 "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    await assert_nothing_written(sessions, tenant)


async def test_auth_and_scope(http, sessions, tenant) -> None:
    body = {"user_id": "user-1", "amount": "5.00", "currency": "EUR"}
    cases = [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer wfk_000000000000_nope"}, 401, "unauthorized"),
        ({"Authorization": tenant.client["Authorization"] + "x"}, 401, "unauthorized"),
        ({"Authorization": "Basic abc"}, 401, "unauthorized"),
        (tenant.admin, 403, "insufficient_scope"),
    ]
    for headers, status, code in cases:
        r = await http.post("/v1/topups", json=body, headers={**headers, "Idempotency-Key": "a-1"})
        assert (r.status_code, r.json()["code"]) == (status, code), headers
    r = await http.get("/v1/ledger/accounts", headers=tenant.client)
    assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
    await assert_nothing_written(sessions, tenant)


async def test_idempotency_key_is_required_and_well_formed(http, sessions, tenant) -> None:
    body = {"user_id": "user-1", "amount": "5.00", "currency": "EUR"}
    r = await http.post("/v1/topups", json=body, headers=tenant.client)
    assert (r.status_code, r.json()["code"]) == (400, "idempotency_key_missing")
    r = await http.post("/v1/topups", json=body,
                        headers={**tenant.client, "Idempotency-Key": "has spaces"})
    assert (r.status_code, r.json()["code"]) == (400, "idempotency_key_invalid")
    await assert_nothing_written(sessions, tenant)


async def test_unknown_routes_and_wallets_are_problems(http, tenant) -> None:
    r = await http.get("/v1/nothing-here", headers=tenant.client)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = await http.get("/v1/wallets/nobody", headers=tenant.client)
    assert (r.status_code, r.json()["code"]) == (404, "user_not_found")
    r = await http.get("/v1/wallets/user-1/transactions", params={"cursor": "%%%"},
                       headers=tenant.client)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_cursor")


async def test_metrics_are_prometheus_and_move(http, tenant) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def requests_total(text: str) -> float:
        for family in text_string_to_metric_families(text):
            if family.name == "walletflow_http_requests":
                return sum(s.value for s in family.samples
                           if s.name == "walletflow_http_requests_total"
                           and s.labels.get("route") == "/v1/wallets/{user_id}")
        return 0.0

    before = requests_total((await http.get("/metrics")).text)
    for _ in range(3):
        await http.get("/v1/wallets/user-1", headers=tenant.client)
    r = await http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert requests_total(r.text) - before == 3


async def test_readyz_checks_postgres_temporal_and_migrations(http, sessions) -> None:
    from sqlalchemy import text

    r = await http.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"postgres": "ok", "temporal": "ok"}
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    async with sessions.begin() as s:
        head = (await s.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        await s.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        r = await http.get("/readyz")
        assert r.status_code == 503
        assert "migrations not current" in r.json()["checks"]["postgres"]
    finally:
        async with sessions.begin() as s:
            await s.execute(text("UPDATE alembic_version SET version_num = :h"), {"h": head})
    assert (await http.get("/readyz")).status_code == 200
