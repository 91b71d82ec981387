"""Rate limits per API key (api/ratelimit.py): a key over its limit gets 429 ``rate_limited``
with ``Retry-After`` and writes nothing, each key has its own budget, a tenant's
``rate_limits.per_key`` replaces the default, every answer of a limited route carries the
``RateLimit-*`` headers, and routes without a key are not limited."""

from __future__ import annotations

import secrets
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from limits.errors import StorageError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.ratelimit import KeyRateLimiter, enforce
from db.tenants import Principal, TenantRepository
from db.users import UserRepository
from settings import Settings
from tests.support import LiveServer, Tenant, count_rows, create_tenant

HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


async def _tenant(sessions: async_sessionmaker[AsyncSession], settings: dict[str, Any]
                  ) -> tuple[Tenant, dict[str, str]]:
    """A tenant with these settings, and the headers of a second client key of it."""
    slug = f"rl-{secrets.token_hex(5)}"
    async with sessions.begin() as session:
        tenants = TenantRepository(session)
        tenant_id = await tenants.create_tenant(slug, slug, settings)
        client = await tenants.create_key(tenant_id, ["client"], "shop-backend")
        admin = await tenants.create_key(tenant_id, ["admin"], "admin-alice")
        other = await tenants.create_key(tenant_id, ["client"], "another-backend")
        await UserRepository(session).create(tenant_id, "user-1", "user1@example.com")
    return (Tenant(tenant_id, slug, client, admin, "user-1"),
            {"Authorization": f"Bearer {other}"})


def _reported(r: httpx.Response) -> tuple[int, int, int]:
    return tuple(int(r.headers[h]) for h in HEADERS)  # type: ignore[return-value]


async def test_a_key_over_its_tenants_limit_is_refused_alone(
        api: LiveServer, sessions: async_sessionmaker[AsyncSession], tenant: Tenant) -> None:
    limited, second_key = await _tenant(sessions, {"rate_limits": {"per_key": "5/minute"}})
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        started = time.time()
        answers = [await http.get(f"/v1/wallets/{limited.user_id}", headers=limited.client)
                   for _ in range(4)]
        answers.append(await http.get("/v1/flows/nope", headers=limited.client))  # an error
        assert [r.status_code for r in answers] == [200, 200, 200, 200, 404]
        assert [_reported(r)[:2] for r in answers] == [(5, 4), (5, 3), (5, 2), (5, 1), (5, 0)]
        assert all(1 <= _reported(r)[2] <= 60 for r in answers)

        refused = await http.post("/v1/topups", json={
            "user_id": limited.user_id, "amount": "10.00", "currency": "EUR"},
            headers={**limited.client, "Idempotency-Key": "over-the-limit"})
        waited = time.time() - started
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert (refused.json()["code"], refused.json()["title"]) == ("rate_limited",
                                                                     "Too many requests")
        retry = int(refused.headers["Retry-After"])
        assert 60 - waited - 1 <= retry <= 60  # when the first of the 5 leaves the minute
        assert _reported(refused) == (5, 0, retry)
        assert await count_rows(sessions, "SELECT count(*) FROM flows WHERE tenant_id = "
                                "CAST(:t AS uuid)", t=limited.id) == 0

        again = await http.get(f"/v1/wallets/{limited.user_id}", headers=limited.client)
        assert again.status_code == 429
        own = await http.get(f"/v1/wallets/{limited.user_id}", headers=second_key)
        assert own.status_code == 200 and _reported(own)[:2] == (5, 4)  # its own budget
        other = await http.get(f"/v1/wallets/{tenant.user_id}", headers=tenant.client)
        assert other.status_code == 200 and int(other.headers["RateLimit-Remaining"]) > 5


async def _server(start_api: Any, **overrides: object) -> httpx.AsyncClient:
    server = await start_api(**overrides)
    return httpx.AsyncClient(base_url=server.url, timeout=30)


async def test_the_default_applies_without_tenant_settings(
        start_api: Any, sessions: async_sessionmaker[AsyncSession]) -> None:
    plain = await create_tenant(sessions)
    malformed, _ = await _tenant(sessions, {"rate_limits": {"per_key": "plenty"}})
    async with await _server(start_api, rate_limit_default="3/minute") as http:
        for who in (plain, malformed):
            codes = [(await http.get(f"/v1/wallets/{who.user_id}", headers=who.client))
                     for _ in range(4)]
            assert [r.status_code for r in codes] == [200, 200, 200, 429], who.slug
            assert [_reported(r)[:2] for r in codes] == [(3, 2), (3, 1), (3, 0), (3, 0)]
        # Routes without an API key are not limited per key, nor is a refused key.
        for _ in range(4):
            health = await http.get("/healthz")
            assert health.status_code == 200 and "RateLimit-Limit" not in health.headers
        unknown = await http.get("/v1/wallets/user-1", headers={"Authorization": "Bearer x"})
        assert unknown.status_code == 401 and "RateLimit-Limit" not in unknown.headers


async def test_the_limit_can_be_switched_off(
        start_api: Any, sessions: async_sessionmaker[AsyncSession]) -> None:
    who = await create_tenant(sessions)
    async with await _server(start_api, rate_limit_enabled=False,
                             rate_limit_default="1/minute") as http:
        answers = [await http.get(f"/v1/wallets/{who.user_id}", headers=who.client)
                   for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert all("RateLimit-Limit" not in r.headers for r in answers)


async def test_an_unreachable_store_lets_requests_pass() -> None:
    class Broken:
        async def test(self, *_: Any) -> bool:
            raise StorageError(ConnectionError("redis is down"))

    limiter = KeyRateLimiter("1/minute")
    limiter.strategy = Broken()  # type: ignore[assignment]
    request: Any = SimpleNamespace(state=SimpleNamespace())
    principal = Principal("t", "slug", "wfk_1", frozenset({"client"}), "a", {})
    await enforce(limiter, request, principal)  # no 429, nothing reported
    assert not hasattr(request.state, "rate_limit")


def test_every_keyed_operation_documents_429() -> None:
    doc = create_app().openapi()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            keyed = "security" in operation
            documented = operation["responses"].get("429")
            assert bool(documented) == keyed, f"{method} {path}"
            if documented:
                assert "rate_limited" in documented["description"]
                assert documented["headers"]["Retry-After"]["required"] is True


@pytest.mark.parametrize(("field", "value"), [
    ("rate_limit_default", "plenty"), ("rate_limit_default", ""),
    ("rate_limit_storage_uri", "memcached://cache:11211"),
    ("rate_limit_storage_uri", "nowhere"),
])
def test_a_bad_rate_limit_setting_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_a_shared_store_is_accepted_and_its_password_masked() -> None:
    settings = Settings(rate_limit_storage_uri="redis://:s3cret@redis:6379/0",
                        rate_limit_default="50/second;1000/minute")
    assert settings.masked()["rate_limit_storage_uri"] == "redis://:***@redis:6379/0"
    assert "s3cret" not in repr(settings)
