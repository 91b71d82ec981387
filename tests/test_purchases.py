"""Purchase-credit end to end on the real stack: every route a purchase can arrive by, pending
cashback, cancellation and refunds, duplicates, and everything a forger might try."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.shops import Shop, connect_shop, shopify_order, woo_order
from tests.support import Tenant, count_rows, eventually, set_rewards, tenant_transfers


@pytest.fixture
async def shop(sessions, tenant: Tenant) -> Shop:
    await set_rewards(sessions, tenant, return_window_seconds=0)
    return await connect_shop(sessions, tenant)


async def purchase(http, tenant: Tenant, order_id: str, state: str, within: float = 30) -> dict:
    async def get() -> dict:
        r = await http.get(f"/v1/purchases/{order_id}", headers=tenant.client)
        return r.json() if r.status_code == 200 else {"state": None, "http": r.status_code}
    return await eventually(get, lambda p: p.get("state") == state, within=within)


async def cashback(http, tenant: Tenant, user_id: str = "user-1") -> dict:
    r = await http.get(f"/v1/wallets/{user_id}", headers=tenant.client)
    assert r.status_code == 200, r.text
    return {c["currency"]: (c["pending"], c["available"]) for c in r.json()["cashback"]}


async def test_widget_purchase_earns_cashback_and_points(http, sessions, shop: Shop) -> None:
    r = await shop.widget(http, "/v1/widget/purchases", {
        "order_id": "ORD_12345", "user_id": "user-1", "amount": "89.50", "currency": "EUR",
        "shop_name": "Amazon"})
    assert r.status_code == 201, r.text
    status = await purchase(http, shop.tenant, "ORD_12345", "available")
    assert status["amounts"]["cashback"] == "8.95"
    assert status["amounts"]["points"] == "89"
    assert status["details"]["attribution"] == "no_match"
    assert await cashback(http, shop.tenant) == {"EUR": ("0.00", "8.95")}
    wallet = (await http.get("/v1/wallets/user-1", headers=shop.tenant.client)).json()
    by = {(b["account"], b["currency"]): b["available"] for b in wallet["balances"]}
    assert by == {("user_wallet", "EUR"): "8.95", ("user_points", "PTS"): "89"}
    assert await tenant_transfers(sessions, shop.tenant) == 2  # cashback hold + points


async def test_rounding_half_up(http, shop: Shop) -> None:
    await shop.widget(http, "/v1/widget/purchases", {
        "order_id": "R-1", "user_id": "user-1", "amount": "25.99", "currency": "EUR"})
    status = await purchase(http, shop.tenant, "R-1", "available")
    assert status["amounts"]["cashback"] == "2.60"


async def test_shopify_order_then_cancellation_voids_the_pending_cashback(
        http, sessions, shop: Shop) -> None:
    await set_rewards(sessions, shop.tenant, return_window_seconds=3600)
    r = await shop.shopify(http, "orders/create", shopify_order(1001, "100.00", "user-1"))
    assert (r.status_code, r.json()["outcome"]) == (200, "purchase_reported")
    await purchase(http, shop.tenant, "1001", "pending")
    assert await cashback(http, shop.tenant) == {"EUR": ("10.00", "0.00")}
    r = await shop.shopify(http, "orders/cancelled", {"id": 1001})
    assert r.json()["outcome"] == "signalled"
    await purchase(http, shop.tenant, "1001", "reversed")
    assert await cashback(http, shop.tenant) == {"EUR": ("0.00", "0.00")}
    wallet = (await http.get("/v1/wallets/user-1", headers=shop.tenant.client)).json()
    assert wallet["balances"][0]["available"] == "0.00"


async def test_woocommerce_partial_refund_reduces_the_cashback(http, sessions, shop: Shop) -> None:
    await set_rewards(sessions, shop.tenant, return_window_seconds=3600)
    r = await shop.woocommerce(http, "order.created", woo_order(2002, "100.00", "user-1"))
    assert r.json()["outcome"] == "purchase_reported"
    await purchase(http, shop.tenant, "2002", "pending")
    r = await shop.woocommerce(http, "order.updated",
                               woo_order(2002, "100.00", "user-1", refunds=["40.00"]))
    assert r.json()["outcome"] == "signalled"

    async def pending() -> dict:
        return await cashback(http, shop.tenant)
    await eventually(pending, lambda c: c == {"EUR": ("6.00", "0.00")})
    status = await purchase(http, shop.tenant, "2002", "pending")
    assert status["amounts"]["refunded"] == "40.00"
    # The same delivery again changes nothing; a second refund adds up.
    r = await shop.woocommerce(http, "order.updated",
                               woo_order(2002, "100.00", "user-1", refunds=["40.00", "10.00"]))
    await eventually(pending, lambda c: c == {"EUR": ("5.00", "0.00")})


async def test_woocommerce_ping_is_answered_and_does_nothing(http, sessions, shop: Shop) -> None:
    r = await http.post("/v1/webhooks/woocommerce", content=b"webhook_id=7",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (r.status_code, r.json()["outcome"]) == (200, "ping")
    assert await count_rows(sessions, "SELECT count(*) FROM purchases WHERE tenant_id = :t",
                            t=shop.tenant.id) == 0


async def test_one_order_by_every_route_ten_times_is_one_flow_one_credit(
        http, sessions, shop: Shop) -> None:
    api = {"order_id": "3003", "user_id": "user-1", "amount": "50.00", "currency": "EUR"}
    calls = []
    for i in range(10):
        calls.append(shop.widget(http, "/v1/widget/purchases", api, ts=int(time.time()) - i))
        calls.append(shop.shopify(http, "orders/create", shopify_order(3003, "50.00", "user-1")))
        calls.append(shop.woocommerce(http, "order.created", woo_order(3003, "50.00", "user-1")))
        calls.append(http.post("/v1/purchases", json=api, headers={
            **shop.tenant.client, "Idempotency-Key": f"p-{i}"}))
    responses = await asyncio.gather(*calls)
    assert {r.status_code for r in responses} <= {200, 201}, [r.text for r in responses]
    assert sum(r.status_code == 201 for r in responses) <= 1
    await purchase(http, shop.tenant, "3003", "available")
    assert await count_rows(sessions, "SELECT count(*) FROM purchases WHERE tenant_id = :t",
                            t=shop.tenant.id) == 1
    assert await cashback(http, shop.tenant) == {"EUR": ("0.00", "5.00")}
    assert await count_rows(sessions, "SELECT count(*) FROM transfers WHERE tenant_id = :t AND "
                            "kind = 'cashback'", t=shop.tenant.id) == 1


async def test_attribution_through_widget_interactions(http, shop: Shop) -> None:
    now = datetime.now(UTC)
    r = await shop.widget(http, "/v1/widget/interactions", {
        "kind": "chat", "user_id": "user-1", "occurred_at": (now - timedelta(minutes=59))
        .isoformat()})
    assert r.status_code == 201, r.text
    await shop.widget(http, "/v1/widget/purchases", {
        "order_id": "A-1", "user_id": "user-1", "amount": "10.00", "currency": "EUR",
        "occurred_at": now.isoformat()})
    status = await purchase(http, shop.tenant, "A-1", "available")
    assert (status["details"]["attribution"], status["details"]["confidence"]) == (
        "session_match", "0.90")


async def test_tier_promotion_applies_from_the_next_purchase(http, sessions, shop: Shop) -> None:
    await set_rewards(sessions, shop.tenant, return_window_seconds=0,
                      tier_thresholds={"silver": 50, "gold": 100000, "platinum": 200000})
    await shop.widget(http, "/v1/widget/purchases", {
        "order_id": "T-1", "user_id": "user-1", "amount": "60.00", "currency": "EUR"})
    first = await purchase(http, shop.tenant, "T-1", "available")
    assert (first["details"]["tier"], first["amounts"]["cashback"]) == ("bronze", "6.00")
    await shop.widget(http, "/v1/widget/purchases", {
        "order_id": "T-2", "user_id": "user-1", "amount": "25.99", "currency": "EUR"})
    second = await purchase(http, shop.tenant, "T-2", "available")
    assert (second["details"]["tier"], second["details"]["cashback_rate"]) == ("silver", "0.11")
    assert second["amounts"]["cashback"] == "2.86"  # 25.99 × 11% = 2.8589 → 2.86


async def test_server_to_server_refund_and_cancel(http, sessions, shop: Shop) -> None:
    await set_rewards(sessions, shop.tenant, return_window_seconds=3600)
    body = {"order_id": "S-1", "user_id": "user-2", "amount": "80.00", "currency": "EUR"}
    r = await http.post("/v1/purchases", json=body,
                        headers={**shop.tenant.client, "Idempotency-Key": "s-1"})
    assert r.status_code == 201, r.text
    await purchase(http, shop.tenant, "S-1", "pending")
    r = await http.post("/v1/purchases/S-1/refunds", json={"amount": "20.00", "currency": "EUR"},
                        headers={**shop.tenant.client, "Idempotency-Key": "refund-1"})
    assert r.json()["outcome"] == "signalled"
    await eventually(lambda: cashback(http, shop.tenant, "user-2"),
                     lambda c: c == {"EUR": ("6.00", "0.00")})
    r = await http.post("/v1/purchases/S-1/refunds", json={"amount": "20.00", "currency": "USD"},
                        headers={**shop.tenant.client, "Idempotency-Key": "refund-2"})
    assert (r.status_code, r.json()["code"]) == (422, "currency_mismatch")
    r = await http.post("/v1/purchases/S-1/cancel",
                        headers={**shop.tenant.client, "Idempotency-Key": "cancel-1"})
    await purchase(http, shop.tenant, "S-1", "reversed")
    assert await cashback(http, shop.tenant, "user-2") == {"EUR": ("0.00", "0.00")}


async def assert_nothing(sessions, tenant: Tenant) -> None:
    assert await count_rows(sessions, "SELECT count(*) FROM purchases WHERE tenant_id = :t",
                            t=tenant.id) == 0
    assert await tenant_transfers(sessions, tenant) == 0


async def test_forged_stale_replayed_and_foreign_calls_are_refused(http, sessions,
                                                                   shop: Shop) -> None:
    payload = {"order_id": "F-1", "user_id": "user-1", "amount": "10.00", "currency": "EUR"}
    body = b'{"order_id": "F-1", "user_id": "user-1", "amount": "10.00", "currency": "EUR"}'
    cases = [
        (shop.widget_headers(body, secret="wrong-secret"), 401, "signature_invalid"),
        # a minute beyond the 300 s tolerance either way: a slow machine (the request reaching
        # the server seconds later) must not bring the future one back within it
        (shop.widget_headers(body, ts=int(time.time()) - 360), 401, "signature_invalid"),
        (shop.widget_headers(body, ts=int(time.time()) + 360), 401, "signature_invalid"),
        (shop.widget_headers(body, key="pk_unknown"), 401, "signature_invalid"),
        ({"Content-Type": "application/json"}, 401, "signature_missing"),
    ]
    for headers, status, code in cases:
        r = await http.post("/v1/widget/purchases", content=body, headers=headers)
        assert (r.status_code, r.json().get("code")) == (status, code), (headers, r.text)
    # tampered: signed one body, sent another
    headers = shop.widget_headers(body)
    r = await http.post("/v1/widget/purchases", content=body.replace(b"10.00", b"99.00"),
                        headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")
    # another tenant's widget secret under this tenant's key
    other = await connect_shop(sessions, await _tenant(sessions))
    r = await other.widget(http, "/v1/widget/purchases", payload, key=shop.widget_key)
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")
    # Shopify / WooCommerce with a wrong secret
    r = await shop.shopify(http, "orders/create", shopify_order(9, "10.00", "user-1"),
                           secret="nope")
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")
    r = await shop.woocommerce(http, "order.created", woo_order(9, "10.00", "user-1"),
                               secret="nope")
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")
    await assert_nothing(sessions, shop.tenant)

    # replay: the first call is accepted, the byte-identical second is refused
    headers = shop.widget_headers(body)
    first = await http.post("/v1/widget/purchases", content=body, headers=headers)
    again = await http.post("/v1/widget/purchases", content=body, headers=headers)
    assert first.status_code == 201
    assert (again.status_code, again.json()["code"]) == (409, "replayed")


async def _tenant(sessions) -> Tenant:
    from tests.support import create_tenant
    return await create_tenant(sessions)


@pytest.mark.parametrize(("payload", "status", "code"), [
    ({"order_id": "B-1", "user_id": "user-1", "amount": "0", "currency": "EUR"}, 422,
     "invalid_amount"),
    ({"order_id": "B-1", "user_id": "user-1", "amount": "-3.00", "currency": "EUR"}, 422,
     "invalid_amount"),
    ({"order_id": "B-1", "user_id": "user-1", "amount": "1.001", "currency": "EUR"}, 422,
     "invalid_amount"),
    ({"order_id": "B-1", "user_id": "user-1", "amount": "abc", "currency": "EUR"}, 422,
     "invalid_amount"),
    ({"order_id": "B 1", "user_id": "user-1", "amount": "1.00", "currency": "EUR"}, 422,
     "validation_error"),
    ({"order_id": "B-1", "amount": "1.00", "currency": "EUR"}, 422, "validation_error"),
    ({"order_id": "B-1", "user_id": "user-1", "amount": "1.00", "currency": "EUR",
      "occurred_at": "2999-01-01T00:00:00Z"}, 422, "validation_error"),
])
async def test_malformed_purchases_write_nothing(http, sessions, shop: Shop, payload, status,
                                                 code) -> None:
    r = await shop.widget(http, "/v1/widget/purchases", payload)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    r = await http.post("/v1/purchases", json=payload,
                        headers={**shop.tenant.client, "Idempotency-Key": "bad-1"})
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    r = await shop.shopify(http, "orders/create", {"id": 5, "total_price": "x",
                                                   "currency": "EUR", "customer": {"id": 1}})
    assert r.status_code in (400, 422)
    await assert_nothing(sessions, shop.tenant)


@pytest.mark.parametrize(("age", "method", "low", "high"), [
    (timedelta(0), "session_match", "0.95", "0.95"),
    (timedelta(minutes=59), "session_match", "0.90", "0.91"),
    (timedelta(minutes=61), "time_proximity", "0.89", "0.90"),
    (timedelta(hours=23), "time_proximity", "0.70", "0.71"),
    (timedelta(hours=25), "email_match", "0.64", "0.65"),
    (timedelta(days=6), "email_match", "0.52", "0.53"),
    (timedelta(days=7), "email_match", "0.50", "0.50"),
    (timedelta(days=8), "no_match", "0.00", "0.00"),
    (-timedelta(minutes=1), "no_match", "0.00", "0.00"),  # after the purchase: not a cause
])
def test_attribution_bands_at_their_boundaries(age, method, low, high) -> None:
    from decimal import Decimal

    from activities.purchases import attribute

    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    got_method, confidence = attribute(now, now - age)
    assert got_method == method
    assert Decimal(low) <= confidence <= Decimal(high)


def test_no_interaction_at_all_is_no_match() -> None:
    from activities.purchases import attribute

    assert attribute(datetime.now(UTC), None) == ("no_match", 0)


async def test_admin_sets_the_rewards_policy(http, shop: Shop) -> None:
    tenant = shop.tenant
    r = await http.put("/v1/settings/rewards", json={"cashback_rate": "0.05"},
                       headers=tenant.client)
    assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
    r = await http.put("/v1/settings/rewards", json={"tier_thresholds": {
        "silver": 10, "gold": 5, "platinum": 20}}, headers=tenant.admin)
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    r = await http.put("/v1/settings/rewards", json={"cashback_rate": "1.5"}, headers=tenant.admin)
    assert r.status_code == 422
    r = await http.put("/v1/settings/rewards", json={"cashback_rate": "0.05"},
                       headers=tenant.admin)
    assert r.status_code == 200, r.text
    assert (r.json()["cashback_rate"], r.json()["return_window_seconds"]) == ("0.05", 0)
    await shop.widget(http, "/v1/widget/purchases", {
        "order_id": "P-5", "user_id": "user-1", "amount": "89.50", "currency": "EUR"})
    status = await purchase(http, tenant, "P-5", "available")
    assert status["amounts"]["cashback"] == "4.48"  # 4.475 rounds half-up


async def test_min_confidence_excludes_unattributed_purchases(http, sessions, shop: Shop) -> None:
    await set_rewards(sessions, shop.tenant, return_window_seconds=0, min_confidence="0.50")
    await shop.widget(http, "/v1/widget/purchases", {
        "order_id": "M-1", "user_id": "user-1", "amount": "50.00", "currency": "EUR"})
    status = await purchase(http, shop.tenant, "M-1", "not_eligible")
    assert status["amounts"]["cashback"] == "0.00"
    assert await tenant_transfers(sessions, shop.tenant) == 0
