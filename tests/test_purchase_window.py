"""The 30-day return window on Temporal's time-skipping test server: the durable timer makes
cashback available, unless the store cancels or refunds first — exactly one outcome."""

from __future__ import annotations

import secrets
import sys
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from temporal_client import data_converter, register_search_attributes
from tests.shops import Shop, connect_shop, shopify_order, woo_order
from tests.support import Tenant, count_rows, eventually
from worker import build_gateways, build_worker

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
async def skipping(sessions, settings, start_api):
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        data_converter=data_converter(settings))  # the API's: encrypted payloads
    await register_search_attributes(env.client)  # the dev server is started with them
    queue = f"walletflow-skip-{secrets.token_hex(4)}"
    gateways = build_gateways(settings)
    api = await start_api(temporal_address=env.client.service_client.config.target_host,
                          temporal_task_queue=queue)
    async with build_worker(env.client, queue, sessions, gateways):
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
            yield env, http
    for gw in gateways.values():
        await gw.close()
    await env.shutdown()


@pytest.fixture
async def shop(sessions, tenant: Tenant) -> Shop:
    return await connect_shop(sessions, tenant)  # default rewards: 10 %, 30-day window


async def pending_state(http, tenant: Tenant, order_id: str) -> dict:
    async def get() -> dict:
        return (await http.get(f"/v1/purchases/{order_id}", headers=tenant.client)).json()
    return await eventually(get, lambda p: p.get("state") == "pending")


async def outcome_of(env: WorkflowEnvironment, flow_id: str) -> str:
    """Wait for the flow's result, letting the test server skip time meanwhile."""
    async with env.time_skipping_unlocked():  # type: ignore[attr-defined]
        return await env.client.get_workflow_handle(flow_id).result()


async def cashback_rows(sessions, tenant: Tenant) -> dict[str, int]:
    out = {}
    for state in ("pending", "posted", "voided"):
        out[state] = await count_rows(
            sessions, "SELECT coalesce(sum(amount), 0) FROM transfers WHERE tenant_id = :t "
            "AND kind = 'cashback' AND state = :s", t=tenant.id, s=state)
    return out


@pytest.mark.parametrize("route", ["widget", "shopify", "woocommerce", "api"])
async def test_cashback_becomes_available_after_30_days(skipping, sessions, shop: Shop,
                                                        route: str) -> None:
    env, http = skipping
    order = {"order_id": "8008", "user_id": "user-1", "amount": "89.50", "currency": "EUR"}
    if route == "widget":
        r = await shop.widget(http, "/v1/widget/purchases", order)
    elif route == "shopify":
        r = await shop.shopify(http, "orders/create", shopify_order(8008, "89.50", "user-1"))
    elif route == "woocommerce":
        r = await shop.woocommerce(http, "order.created", woo_order(8008, "89.50", "user-1"))
    else:
        r = await http.post("/v1/purchases", json=order,
                            headers={**shop.tenant.client, "Idempotency-Key": "k-1"})
    assert r.status_code in (200, 201), r.text
    status = await pending_state(http, shop.tenant, "8008")
    assert status["details"]["platform"] == route
    assert await cashback_rows(sessions, shop.tenant) == {"pending": 895, "posted": 0,
                                                          "voided": 0}
    held = (datetime.fromisoformat(status["details"]["release_at"])
            - datetime.fromisoformat(status["created_at"]))
    assert timedelta(days=30) <= held < timedelta(days=30, seconds=5)
    assert await outcome_of(env, status["flow_id"]) == "available"
    assert await cashback_rows(sessions, shop.tenant) == {"pending": 0, "posted": 895,
                                                          "voided": 0}


async def test_cancellation_inside_the_window_voids(skipping, sessions, shop: Shop) -> None:
    env, http = skipping
    await shop.shopify(http, "orders/create", shopify_order(4004, "100.00", "user-1"))
    status = await pending_state(http, shop.tenant, "4004")
    await env.sleep(timedelta(days=29))
    r = await shop.shopify(http, "orders/cancelled", {"id": 4004})
    assert r.json()["outcome"] == "signalled"
    assert await outcome_of(env, status["flow_id"]) == "reversed"
    assert await cashback_rows(sessions, shop.tenant) == {"pending": 0, "posted": 0,
                                                          "voided": 1000}


async def test_partial_refund_then_window_passes(skipping, sessions, shop: Shop) -> None:
    env, http = skipping
    await shop.widget(http, "/v1/widget/purchases", {
        "order_id": "W-2", "user_id": "user-1", "amount": "100.00", "currency": "EUR"})
    status = await pending_state(http, shop.tenant, "W-2")
    await http.post("/v1/purchases/W-2/refunds", json={"amount": "25.00", "currency": "EUR"},
                    headers={**shop.tenant.client, "Idempotency-Key": "r-1"})
    assert await outcome_of(env, status["flow_id"]) == "available"
    assert await cashback_rows(sessions, shop.tenant) == {"pending": 0, "posted": 750,
                                                          "voided": 1000}


async def test_a_cancellation_racing_the_timer_has_exactly_one_outcome(skipping, sessions,
                                                                       shop: Shop) -> None:
    env, http = skipping
    await shop.widget(http, "/v1/widget/purchases", {
        "order_id": "W-3", "user_id": "user-1", "amount": "40.00", "currency": "EUR"})
    status = await pending_state(http, shop.tenant, "W-3")
    await env.sleep(timedelta(days=30))  # the timer and the cancellation are due together
    await http.post("/v1/purchases/W-3/cancel",
                    headers={**shop.tenant.client, "Idempotency-Key": "c-1"})
    outcome = await outcome_of(env, status["flow_id"])
    rows = await cashback_rows(sessions, shop.tenant)
    assert outcome in ("available", "reversed")
    assert rows == ({"pending": 0, "posted": 400, "voided": 0} if outcome == "available"
                    else {"pending": 0, "posted": 0, "voided": 400})
