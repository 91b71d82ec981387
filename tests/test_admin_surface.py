"""The admin surface through the API: stores (a platform's own secret, rotation, deletion),
webhook endpoints (update, disable, enable, delete), a user's tier, and cursor pagination on
every list."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.users import tier_view
from contracts.rewards import TIERS, RewardsPolicy
from db.withdrawals import WithdrawalQueries
from tests.shops import Shop, shopify_order, woo_order
from tests.support import LiveServer, Tenant, create_tenant, eventually
from tests.test_orders import fund
from tests.test_webhooks_out import Receiver, dev_mode, endpoint

SHOPIFY_SECRET = "shpss_supplied_by_shopify_1"
# Cursors that are not ours: [1], ["x","y"], 12, -1, a NUL in the id, a time past year 9999 UTC.
NUL_ID = "WyIyMDI0LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgIlx1MDAwMCJd"
OVERFLOWING = "WyI5OTk5LTEyLTMxVDIzOjAwOjAwLTA1OjAwIiwgImEiXQ"


def _shop(tenant: Tenant, domain: str = "", secret: str = "", woo: str = "",
          woo_secret: str = "") -> Shop:
    return Shop(tenant, "", "", domain, secret, woo, woo_secret)


async def _store(http, tenant: Tenant, **body: Any) -> dict[str, Any]:
    r = await http.post("/v1/stores", json=body, headers=tenant.admin)
    assert r.status_code == 201, r.text
    return r.json()


# -- stores ------------------------------------------------------------------------------------


async def test_a_shopify_store_uses_the_secret_shopify_supplies(http, tenant) -> None:
    domain = f"{tenant.slug}.myshopify.com"
    store = await _store(http, tenant, platform="shopify", public_key=domain,
                         secret=SHOPIFY_SECRET)
    assert store["secret"] == SHOPIFY_SECRET and store["store_id"].startswith("st_")
    shop = _shop(tenant, domain, SHOPIFY_SECRET)
    r = await shop.shopify(http, "orders/create", shopify_order(9101, "20.00", "user-1"))
    assert (r.status_code, r.json().get("outcome")) == (200, "purchase_reported"), r.text

    rotated = SHOPIFY_SECRET + "-rotated"
    r = await http.post(f"/v1/stores/{store['store_id']}/rotate", json={"secret": rotated},
                        headers=tenant.admin)
    assert r.status_code == 200 and r.json()["secret"] == rotated, r.text
    r = await shop.shopify(http, "orders/create", shopify_order(9102, "20.00", "user-1"))
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")
    r = await shop.shopify(http, "orders/create", shopify_order(9103, "20.00", "user-1"),
                           secret=rotated)
    assert (r.status_code, r.json().get("outcome")) == (200, "purchase_reported"), r.text

    r = await http.delete(f"/v1/stores/{store['store_id']}", headers=tenant.admin)
    assert r.json() == {"id": store["store_id"], "deleted": True}, r.text
    r = await shop.shopify(http, "orders/create", shopify_order(9104, "20.00", "user-1"),
                           secret=rotated)
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")
    for method, path in (("POST", f"/v1/stores/{store['store_id']}/rotate"),
                         ("DELETE", f"/v1/stores/{store['store_id']}")):
        r = await http.request(method, path, json={"secret": rotated}, headers=tenant.admin)
        assert (r.status_code, r.json()["code"]) == (404, "store_not_found"), r.text


async def test_a_woocommerce_store_needs_its_secret_and_a_widget_gets_one(http, tenant) -> None:
    url = f"https://{tenant.slug}.example.com"
    for body in ({"platform": "woocommerce", "public_key": url},
                 {"platform": "shopify", "public_key": "x.myshopify.com"},
                 {"platform": "widget", "secret": "chosen-by-caller"}):
        r = await http.post("/v1/stores", json=body, headers=tenant.admin)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), body
    store = await _store(http, tenant, platform="woocommerce", public_key=url,
                         secret="woo-secret-1")
    r = await _shop(tenant, woo=url, woo_secret="woo-secret-1").woocommerce(
        http, "order.created", woo_order(9201, "10.00", "user-1"))
    assert (r.status_code, r.json().get("outcome")) == (200, "purchase_reported"), r.text
    r = await http.post("/v1/stores", json={"platform": "woocommerce", "public_key": url,
                                            "secret": "woo-secret-2"}, headers=tenant.admin)
    assert (r.status_code, r.json()["code"]) == (409, "store_exists")
    r = await http.post(f"/v1/stores/{store['store_id']}/rotate", json={},
                        headers=tenant.admin)
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")

    widget = await _store(http, tenant, platform="widget")
    assert widget["public_key"].startswith("pk_") and len(widget["secret"]) >= 32
    shop = Shop(tenant, widget["public_key"], widget["secret"], "", "", "", "")
    r = await shop.widget(http, "/v1/widget/interactions", {"kind": "view", "user_id": "user-1"})
    assert r.status_code == 201, r.text
    r = await http.post(f"/v1/stores/{widget['store_id']}/rotate", json={},
                        headers=tenant.admin)
    new_secret = r.json()["secret"]
    assert r.status_code == 200 and new_secret != widget["secret"], r.text
    r = await shop.widget(http, "/v1/widget/interactions", {"kind": "view", "user_id": "user-1"})
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")
    r = await shop.widget(http, "/v1/widget/interactions", {"kind": "click", "user_id": "user-1"},
                          secret=new_secret)
    assert r.status_code == 201, r.text
    # Lists never show a secret; the API keys of clients cannot manage stores.
    listed = await walk(http, tenant, "/v1/stores", 1)
    assert [s["store_id"] for s in listed] == [store["store_id"], widget["store_id"]]
    assert all("secret" not in s for s in listed)
    for method, path in (("GET", "/v1/stores"), ("POST", "/v1/stores"),
                         ("DELETE", f"/v1/stores/{widget['store_id']}")):
        r = await http.request(method, path, json={"platform": "widget"}, headers=tenant.client)
        assert r.status_code == 403, r.text


# -- pagination ----------------------------------------------------------------------------------


async def walk(http, tenant: Tenant, path: str, limit: int, admin: bool = True,
               **params: Any) -> list[dict[str, Any]]:
    """Every item of a list, page by page; each page but the last is full."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):  # a cursor that repeats a page must not loop for ever
        r = await http.get(path, params={**params, "limit": limit,
                                         **({"cursor": cursor} if cursor else {})},
                           headers=tenant.admin if admin else tenant.client)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert len(page["data"]) == limit
    raise AssertionError(f"{path}: more than 100 pages; seen {len(items)} items")


def walk_sync(client: httpx.Client, tenant: Tenant, path: str, limit: int
              ) -> tuple[list[str], int]:
    ids: list[str] = []
    cursor, pages = None, 0
    while pages < 100:
        r = client.get(path, params={"limit": limit, **({"cursor": cursor} if cursor else {})},
                       headers=tenant.admin)
        assert r.status_code == 200, r.text
        pages += 1
        ids += [s["store_id"] for s in r.json()["data"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return ids, pages
    raise AssertionError(f"{path}: more than 100 pages")


async def test_pagination_walks_every_store_exactly_once(http, sessions) -> None:
    loop = asyncio.get_running_loop()

    @settings(max_examples=8, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 9), st.integers(1, 4))
    def property_(n: int, limit: int) -> None:
        tenant = asyncio.run_coroutine_threadsafe(create_tenant(sessions, "pg"), loop).result()
        created = []
        for _ in range(n):
            r = client.post("/v1/stores", json={"platform": "widget"}, headers=tenant.admin)
            assert r.status_code == 201, r.text
            created.append(r.json()["store_id"])
        ids, pages = walk_sync(client, tenant, "/v1/stores", limit)
        assert ids == created  # oldest first, each exactly once
        assert pages == max(1, math.ceil(n / limit))  # never a trailing empty page

    with httpx.Client(base_url=str(http.base_url), timeout=30) as client:
        await asyncio.to_thread(property_)


async def test_every_list_pages_and_refuses_a_foreign_cursor(http, sessions, tenant) -> None:
    ends = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    campaigns = [f"pc-{i}" for i in range(3)]
    for cid in campaigns:
        r = await http.post("/v1/campaigns", json={"campaign_id": cid, "name": cid,
                                                   "currency": "EUR", "target": "100.00",
                                                   "ends_at": ends}, headers=tenant.admin)
        assert r.status_code == 201, r.text
    listed = await walk(http, tenant, "/v1/campaigns", 2)
    assert [c["campaign_id"] for c in listed] == campaigns[::-1]

    await fund(sessions, tenant, 1000)
    donations = []
    for i in range(3):
        r = await http.post(f"/v1/campaigns/{campaigns[0]}/donations", json={
            "user_id": "user-1", "amount": f"{i + 1}.00", "currency": "EUR"},
            headers={**tenant.client, "Idempotency-Key": f"pd-{i}"})
        assert r.status_code == 201, r.text
        donations.append(r.json()["flow_id"])
    listed = await walk(http, tenant, "/v1/users/user-1/donations", 2, admin=False)
    assert [d["flow_id"] for d in listed] == donations[::-1]

    # Five withdrawals recorded in one transaction share their created_at: the id breaks ties.
    async with sessions.begin() as s:
        for i in range(5):
            await WithdrawalQueries(s).create(tenant.id, f"{tenant.slug}:withdrawal:pw-{i}",
                                              "user-1", 100, "EUR", "paypal", "a@b.example",
                                              "client")
    listed = await walk(http, tenant, "/v1/withdrawals", 2)
    assert sorted(w["flow_id"] for w in listed) == [f"{tenant.slug}:withdrawal:pw-{i}"
                                                     for i in range(5)]
    assert len(listed) == 5

    for path, admin in (("/v1/campaigns", True), ("/v1/withdrawals", True),
                        ("/v1/webhook-endpoints", True), ("/v1/webhook-deliveries", True),
                        ("/v1/stores", True), ("/v1/users/user-1/donations", False)):
        foreign = ("LTE",) if "donations" in path else ("MTI", NUL_ID, OVERFLOWING)
        for cursor in ("not-a-cursor!", "WzFd", "WyJ4IiwieSJd", *foreign):
            r = await http.get(path, params={"cursor": cursor},
                               headers=tenant.admin if admin else tenant.client)
            assert (r.status_code, r.json()["code"]) == (400, "invalid_cursor"), (path, cursor)


# -- users ---------------------------------------------------------------------------------------


async def test_a_user_shows_tier_lifetime_points_and_the_next_tier(http, sessions,
                                                                  tenant) -> None:
    r = await http.get("/v1/users/user-1", headers=tenant.client)
    assert r.status_code == 200, r.text
    assert r.json() | {"created_at": None} == {
        "user_id": "user-1", "email": "user1@example.com", "created_at": None,
        "tier": "bronze", "lifetime_points": "0",
        "next_tier": {"name": "silver", "threshold": "1000", "points_needed": "1000"}}
    await fund(sessions, tenant, 1200, "PTS")
    r = await http.get("/v1/users/user-1", headers=tenant.client)
    assert (r.json()["tier"], r.json()["lifetime_points"], r.json()["next_tier"]) == (
        "silver", "1200", {"name": "gold", "threshold": "5000", "points_needed": "3800"})
    for path in ("/v1/users/nobody", "/v1/users/nobody/donations"):
        r = await http.get(path, headers=tenant.client)
        assert (r.status_code, r.json()["code"]) == (404, "user_not_found"), path
    r = await http.get("/v1/users/user-1/donations", headers=tenant.client)
    assert r.json() == {"data": [], "next_cursor": None}


@given(st.integers(0, 10**7), st.lists(st.integers(1, 10**6), min_size=3, max_size=3,
                                        unique=True).map(sorted))
def test_the_next_tier_is_the_one_above(points: int, thresholds: list[int]) -> None:
    policy = RewardsPolicy(tier_thresholds=dict(zip(TIERS[1:], thresholds, strict=True)))
    view = tier_view(policy, points)
    assert view["tier"] == policy.tier_for(points)
    nxt = view["next_tier"]
    if nxt is None:
        assert view["tier"] == "platinum"
    else:
        assert TIERS.index(nxt["name"]) == TIERS.index(view["tier"]) + 1
        assert int(nxt["threshold"]) - int(nxt["points_needed"]) == points < int(nxt["threshold"])


# -- webhook endpoints ---------------------------------------------------------------------------


async def _receivers(n: int) -> tuple[list[Receiver], list[LiveServer]]:
    receivers = [Receiver() for _ in range(n)]
    servers = [await LiveServer(r.app()).start() for r in receivers]
    return receivers, servers


async def _wallet_event(sessions, tenant: Tenant, amount: int) -> None:
    await fund(sessions, tenant, amount)  # a posted transfer: wallet.updated


async def test_an_updated_url_gets_the_next_delivery(http, sessions, tenant) -> None:
    (first, second), servers = await _receivers(2)
    try:
        await dev_mode(sessions, tenant)
        ep = await endpoint(http, tenant, servers[0].url + "/hook", ["wallet.updated"])
        await _wallet_event(sessions, tenant, 101)
        await eventually(lambda: _count(first), lambda n: n == 1)
        r = await http.patch(f"/v1/webhook-endpoints/{ep['id']}",
                             json={"url": servers[1].url + "/hook"}, headers=tenant.admin)
        assert r.status_code == 200 and r.json()["url"] == servers[1].url + "/hook", r.text
        assert r.json()["event_types"] == ["wallet.updated"] and "secret" not in r.json()
        await _wallet_event(sessions, tenant, 102)
        await eventually(lambda: _count(second), lambda n: n == 1)
        assert len(first.received) == 1
        deliveries = await eventually(  # marked delivered just after the receiver answers
            lambda: walk(http, tenant, "/v1/webhook-deliveries", 1, endpoint_id=ep["id"]),
            lambda ds: [d["status"] for d in ds] == ["delivered", "delivered"])
        assert [d["attempts"][0]["status_code"] for d in deliveries] == [204, 204]
    finally:
        for server in servers:
            await server.stop()


async def test_disabled_and_deleted_endpoints_get_no_delivery(http, sessions, tenant) -> None:
    (off, gone, on), servers = await _receivers(3)
    try:
        await dev_mode(sessions, tenant)
        eps = [await endpoint(http, tenant, s.url + "/hook", ["wallet.updated"])
               for s in servers]
        r = await http.post(f"/v1/webhook-endpoints/{eps[0]['id']}/disable",
                            headers=tenant.admin)
        assert r.status_code == 200 and r.json()["disabled_at"], r.text
        r = await http.delete(f"/v1/webhook-endpoints/{eps[1]['id']}", headers=tenant.admin)
        assert r.json() == {"id": eps[1]["id"], "deleted": True}, r.text
        await _wallet_event(sessions, tenant, 201)
        await eventually(lambda: _count(on), lambda n: n == 1)  # fanned out with the others
        assert (off.received, gone.received) == ([], [])
        listed = await walk(http, tenant, "/v1/webhook-endpoints", 1)
        assert [e["id"] for e in listed] == [eps[0]["id"], eps[2]["id"]]
        for action in ("enable", "disable", "rotate"):
            r = await http.post(f"/v1/webhook-endpoints/{eps[1]['id']}/{action}",
                                headers=tenant.admin)
            assert (r.status_code, r.json()["code"]) == (404, "endpoint_not_found"), action
        r = await http.post(f"/v1/webhook-endpoints/{eps[0]['id']}/enable", headers=tenant.admin)
        assert r.status_code == 200 and r.json()["disabled_at"] is None, r.text
        await _wallet_event(sessions, tenant, 202)
        await eventually(lambda: _count(off), lambda n: n == 1)
        assert gone.received == []
    finally:
        for server in servers:
            await server.stop()


async def test_an_updated_url_is_checked_like_a_new_one(http, tenant) -> None:
    ep = await endpoint(http, tenant, "https://93.184.216.34/in")
    for url in ("http://10.0.0.5/hook", "http://127.0.0.1:9/hook", "https://localhost/x"):
        r = await http.patch(f"/v1/webhook-endpoints/{ep['id']}", json={"url": url},
                             headers=tenant.admin)
        assert (r.status_code, r.json()["code"]) == (422, "url_not_allowed"), url
    r = await http.patch(f"/v1/webhook-endpoints/{ep['id']}", json={"event_types": ["x.y"]},
                         headers=tenant.client)
    assert r.status_code == 403
    [listed] = (await http.get("/v1/webhook-endpoints", headers=tenant.admin)).json()["data"]
    assert (listed["url"], listed["event_types"]) == ("https://93.184.216.34/in", [])


async def _count(rec: Receiver) -> int:
    return len(rec.received)
