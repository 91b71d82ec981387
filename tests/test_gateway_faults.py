"""Gateway faults and expiry: retries reuse the Stripe idempotency key; permanent refusals fail
at once; a missed webhook is rescued by asking Stripe; an unpaid top-up expires and its
PaymentIntent is cancelled."""

from __future__ import annotations

import pytest

from tests.support import balances, tenant_transfers, topup, wait_state


async def create_calls(stripe_ctl) -> int:
    stats = (await stripe_ctl.get("/_standin/stats")).json()
    return stats.get("payment_intents.create", {}).get("calls", 0)


async def intents(stripe_ctl, flow_id: str) -> list[dict]:
    return (await stripe_ctl.get("/_standin/payment_intents",
                                 params={"flow_id": flow_id})).json()["data"]


async def test_5xx_and_timeouts_are_retried_with_the_same_key(http, stripe_ctl, tenant) -> None:
    flow_id = f"{tenant.slug}:topup:flaky-1"
    for fault in ({"mode": "error_500", "count": 2}, {"mode": "timeout", "count": 1,
                                                       "delay_seconds": 3.0}):
        await stripe_ctl.post("/_standin/faults", json={
            "operation": "payment_intents.create", "match": {"flow_id": flow_id}, **fault})
    before = await create_calls(stripe_ctl)
    r = await topup(http, tenant, "flaky-1", amount="20.00", currency="EUR")
    assert r.status_code == 201, r.text
    assert await create_calls(stripe_ctl) - before >= 4  # 2 × 500, 1 timeout, then success
    [intent] = await intents(stripe_ctl, flow_id)
    assert intent["id"] == r.json()["payment"]["payment_id"]


async def test_permanent_refusal_fails_at_once(http, stripe_ctl, sessions, tenant) -> None:
    flow_id = f"{tenant.slug}:topup:refused-1"
    await stripe_ctl.post("/_standin/faults", json={
        "operation": "payment_intents.create", "mode": "error_400", "count": 5,
        "match": {"flow_id": flow_id}})
    before = await create_calls(stripe_ctl)
    r = await topup(http, tenant, "refused-1", amount="20.00", currency="EUR")
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "gateway_refused"
    status = await wait_state(http, tenant, flow_id, "failed")
    assert status["error"].startswith("payment could not be created: stripe refused"), status
    assert await create_calls(stripe_ctl) - before == 1  # no retries
    assert await intents(stripe_ctl, flow_id) == []
    assert await tenant_transfers(sessions, tenant) == 0
    # The answer is final: the same request gets the same refusal, no new attempt.
    again = await topup(http, tenant, "refused-1", amount="20.00", currency="EUR")
    assert (again.status_code, again.json()["code"]) == (422, "gateway_refused")
    assert await create_calls(stripe_ctl) - before == 1


async def test_amount_stripe_refuses_fails_the_flow(http, stripe_ctl, tenant) -> None:
    r = await topup(http, tenant, "huge-1", amount="1000000.00", currency="EUR")
    assert (r.status_code, r.json()["code"]) == (422, "gateway_refused")
    assert "amount_too_large" in r.json()["detail"]


@pytest.fixture(scope="module")
async def expiring_api(start_api, worker):
    return await start_api(topup_expiry_seconds=2)


async def test_unpaid_topup_expires_and_cancels_the_payment(expiring_api, http, stripe_ctl,
                                                            sessions, tenant) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=expiring_api.url, timeout=30) as api:
        r = await topup(api, tenant, "expire-1", amount="5.00", currency="EUR")
        assert r.status_code == 201, r.text
        status = await wait_state(api, tenant, r.json()["flow_id"], "expired")
    assert "payment_canceled" in [s["name"] for s in status["steps"]]
    [intent] = await intents(stripe_ctl, r.json()["flow_id"])
    assert intent["status"] == "canceled"
    assert await tenant_transfers(sessions, tenant) == 0


async def test_missed_webhook_is_rescued_by_a_status_poll(expiring_api, http, stripe_ctl,
                                                          sessions, tenant) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=expiring_api.url, timeout=30) as api:
        r = await topup(api, tenant, "lost-1", amount="8.00", currency="EUR")
        flow_id = r.json()["flow_id"]
        await stripe_ctl.post("/_standin/faults", json={
            "operation": "webhook", "mode": "drop", "count": 1, "match": {"flow_id": flow_id}})
        await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}"
                              "/succeed")
        status = await wait_state(api, tenant, flow_id, "completed")
    assert "payment_found_by_status_poll" in [s["name"] for s in status["steps"]]
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "8.00"
    assert await tenant_transfers(sessions, tenant) == 1
