"""One end-to-end suite over both gateways (Stripe and Razorpay, each through its official SDK
against the project's stand-in): top-up, points package, card and split orders, a partial refund
to the original method, declines, duplicate / forged / stale webhooks and an expiry whose
webhook was missed. The same workflows serve both; only the drivers below differ."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from razorpay_standin import sign_body
from tests.support import (
    LiveServer,
    Tenant,
    balances,
    count_rows,
    eventually,
    flow_status,
    topup,
    wait_state,
)
from tests.test_orders import fund, order, pay

GATEWAYS = ["stripe", "razorpay"]


@dataclass
class Driver:
    """How a test pays, declines and replays webhooks at one gateway's stand-in."""

    name: str
    ctl: httpx.AsyncClient
    currency: str

    async def pay(self, payment_id: str) -> dict[str, Any]:
        path = (f"/_standin/payment_intents/{payment_id}/succeed" if self.name == "stripe"
                else f"/_standin/orders/{payment_id}/pay")
        r = await self.ctl.post(path)
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def decline(self, payment_id: str) -> None:
        path = (f"/_standin/payment_intents/{payment_id}/fail" if self.name == "stripe"
                else f"/_standin/orders/{payment_id}/decline")
        assert (await self.ctl.post(path)).status_code == 200

    async def drop_webhooks(self, flow_id: str, count: int = 5) -> None:
        r = await self.ctl.post("/_standin/faults", json={
            "operation": "webhook", "mode": "drop", "count": count, "match": {"flow_id": flow_id}})
        assert r.status_code == 201, r.text

    async def paid_event(self, payment_id: str) -> str:
        """The id of the event that says the payment succeeded."""
        if self.name == "stripe":
            data = (await self.ctl.get("/_standin/events", params={
                "payment_intent": payment_id, "type": "payment_intent.succeeded"})).json()["data"]
            return str(data[0]["id"])
        data = (await self.ctl.get("/_standin/events", params={
            "order_id": payment_id, "type": "payment.captured"})).json()
        return str(data[0]["id"])

    async def signed(self, event_id: str, **query: Any) -> tuple[bytes, dict[str, str]]:
        r = (await self.ctl.get(f"/_standin/events/{event_id}/signed", params=query)).json()
        return r["payload"].encode(), r["headers"]

    async def stale(self, event_id: str, secret: str) -> tuple[bytes, dict[str, str]]:
        """The event as an old delivery would carry it (signed with the real secret)."""
        if self.name == "stripe":
            return await self.signed(event_id, timestamp=int(time.time()) - 3600)
        body, headers = await self.signed(event_id)
        raw = json.loads(body)
        raw["created_at"] -= 3 * 86400
        old = json.dumps(raw).encode()
        return old, {**headers, "X-Razorpay-Signature": sign_body(old, secret),
                     "X-Razorpay-Event-Id": headers["X-Razorpay-Event-Id"] + "old"}

    async def gateway_refund(self, flow_id: str) -> dict[str, Any]:
        async def find() -> list[dict[str, Any]]:
            r = (await self.ctl.get("/_standin/refunds", params={"flow_id": flow_id})).json()
            return list(r["data"] if self.name == "stripe" else r)
        [found] = await eventually(find, lambda rs: len(rs) == 1)
        return found

    async def settle_refund(self, refund_id: str) -> None:
        path = (f"/_standin/refunds/{refund_id}/succeed" if self.name == "stripe"
                else f"/_standin/refunds/{refund_id}/process")
        assert (await self.ctl.post(path)).status_code == 200


@pytest.fixture(params=GATEWAYS)
async def gw(request: pytest.FixtureRequest, standin: LiveServer,
             razorpay_standin: LiveServer) -> AsyncIterator[Driver]:
    name = request.param
    url = standin.url if name == "stripe" else razorpay_standin.url
    async with httpx.AsyncClient(base_url=url, timeout=30) as ctl:
        yield Driver(name, ctl, "EUR" if name == "stripe" else "INR")
        await ctl.delete("/_standin/faults")


async def clearing(sessions: Any, tenant: Tenant, gateway: str, currency: str) -> int:
    """The gateway's clearing account (all its shards), in minor units."""
    return await count_rows(
        sessions, "SELECT coalesce(sum(posted), 0) FROM accounts WHERE tenant_id = :t AND "
        "kind = 'gateway_clearing' AND split_part(owner_id, '#', 1) = :g AND currency = :c",
        t=tenant.id, g=gateway, c=currency)


async def recorded(sessions: Any, gateway: str, object_id: str) -> int:
    return await count_rows(sessions, "SELECT count(*) FROM gateway_objects WHERE gateway = :g "
                            "AND object_id = :o", g=gateway, o=object_id)


async def test_topup_paid_credits_the_wallet_once(http, sessions, tenant, gw: Driver) -> None:
    r = await topup(http, tenant, "t-1", amount="25.00", currency=gw.currency, gateway=gw.name)
    assert r.status_code == 201, r.text
    payment = r.json()["payment"]
    assert payment["gateway"] == gw.name
    if gw.name == "razorpay":
        assert payment["payment_id"].startswith("order_")
        assert payment["razorpay"]["order_id"] == payment["payment_id"]
        assert (payment["razorpay"]["amount"], payment["razorpay"]["currency"]) == (2500, "INR")
        assert payment["razorpay"]["key_id"].startswith("rzp_test_")
    assert payment["checkout_url"].endswith(f"/checkout/{payment['payment_id']}")
    await gw.pay(payment["payment_id"])
    status = await wait_state(http, tenant, r.json()["flow_id"], "completed")
    assert status["details"]["gateway"] == gw.name
    wallet = (await balances(http, tenant))[("user_wallet", gw.currency)]
    assert wallet["available"] == "25.00"
    assert await clearing(sessions, tenant, gw.name, gw.currency) == -2500
    assert await recorded(sessions, gw.name, payment["payment_id"]) == 1


async def test_points_package(http, sessions, tenant, gw: Driver) -> None:
    r = await topup(http, tenant, "p-1", package="basic", gateway=gw.name)
    assert r.status_code == 201, r.text
    await gw.pay(r.json()["payment"]["payment_id"])
    await wait_state(http, tenant, r.json()["flow_id"], "completed")
    assert (await balances(http, tenant))[("user_points", "PTS")]["available"] == "100"
    assert await clearing(sessions, tenant, gw.name, "EUR") == -999


async def test_card_order(http, sessions, tenant, gw: Driver) -> None:
    r = await pay(http, tenant, "c-1", order_id="c-1", amount="40.00", currency=gw.currency,
                  method="card", gateway=gw.name)
    assert r.status_code == 201, r.text
    assert r.json()["payment"]["gateway"] == gw.name
    await gw.pay(r.json()["payment"]["payment_id"])
    await eventually(lambda: order(http, tenant, "c-1"), lambda o: o["status"] == "paid")
    assert await clearing(sessions, tenant, gw.name, gw.currency) == -4000


async def test_split_order_and_a_partial_refund_to_the_card(http, sessions, tenant,
                                                           gw: Driver) -> None:
    await fund(sessions, tenant, 3000, gw.currency)
    r = await pay(http, tenant, "s-1", order_id="s-1", amount="50.00", currency=gw.currency,
                  method="split", wallet_amount="20.00", gateway=gw.name)
    assert r.status_code == 201, r.text
    await gw.pay(r.json()["payment"]["payment_id"])
    await eventually(lambda: order(http, tenant, "s-1"), lambda o: o["status"] == "paid")
    assert (await balances(http, tenant))[("user_wallet", gw.currency)]["available"] == "10.00"

    rf = await http.post("/v1/orders/s-1/refunds", json={
        "amount": "12.00", "currency": gw.currency, "destination": "original"},
        headers={**tenant.client, "Idempotency-Key": "rf-1"})
    assert (rf.status_code, rf.json()["state"]) == (202, "awaiting_gateway"), rf.text
    found = await gw.gateway_refund(rf.json()["flow_id"])
    assert found["amount"] == 1200
    await gw.settle_refund(found["id"])

    async def state() -> str:
        return str((await http.get(f"/v1/refunds/{rf.json()['flow_id']}",
                                   headers=tenant.client)).json()["state"])
    await eventually(state, lambda s: s == "refunded")
    assert (await order(http, tenant, "s-1"))["status"] == "partially_refunded"
    # seeded 30.00 from clearing (not this gateway's), the card's 30.00 in, 12.00 back out
    assert await clearing(sessions, tenant, gw.name, gw.currency) == -3000 + 1200
    assert await recorded(sessions, gw.name, found["id"]) == 1


async def test_declined_payment_fails_the_topup(http, sessions, tenant, gw: Driver) -> None:
    r = await topup(http, tenant, "d-1", amount="10.00", currency=gw.currency, gateway=gw.name)
    await gw.decline(r.json()["payment"]["payment_id"])
    status = await wait_state(http, tenant, r.json()["flow_id"], "failed")
    assert status["error_code"] == "payment_failed"
    assert ("user_wallet", gw.currency) not in await balances(http, tenant) or (
        (await balances(http, tenant))[("user_wallet", gw.currency)]["posted"] == "0.00")
    assert await clearing(sessions, tenant, gw.name, gw.currency) == 0


async def test_duplicate_forged_and_stale_webhooks(http, sessions, tenant, gw: Driver) -> None:
    from tests.conftest import RAZORPAY_WEBHOOK_SECRET
    r = await topup(http, tenant, "w-1", amount="15.00", currency=gw.currency, gateway=gw.name)
    payment_id = r.json()["payment"]["payment_id"]
    await gw.pay(payment_id)
    await wait_state(http, tenant, r.json()["flow_id"], "completed")
    event_id = await gw.paid_event(payment_id)
    path = f"/v1/webhooks/{gw.name}"

    body, headers = await gw.signed(event_id)
    again = await http.post(path, content=body, headers=headers)
    assert (again.status_code, again.json().get("duplicate")) == (200, True), again.text

    body, headers = await gw.signed(event_id, secret="whsec_forged_secret")
    forged = await http.post(path, content=body, headers=headers)
    assert forged.status_code in (400, 401), forged.text
    assert forged.headers["content-type"].startswith("application/problem+json")
    assert forged.json()["code"] == "signature_invalid"

    body, headers = await gw.stale(event_id, RAZORPAY_WEBHOOK_SECRET)
    stale = await http.post(path, content=body, headers=headers)
    assert stale.status_code == 400 and stale.json()["code"] == "signature_invalid", stale.text
    assert await count_rows(sessions, "SELECT count(*) FROM webhook_events WHERE event_id LIKE "
                            ":e", e=event_id + "%") == 1
    assert (await balances(http, tenant))[("user_wallet", gw.currency)]["posted"] == "15.00"


async def test_expiry_finds_a_payment_whose_webhook_was_missed(http, start_api, tenant,
                                                               gw: Driver) -> None:
    short = await start_api(topup_expiry_seconds=3)
    flow_id = f"{tenant.slug}:topup:x-1"
    await gw.drop_webhooks(flow_id)
    async with httpx.AsyncClient(base_url=short.url, timeout=30) as api:
        r = await topup(api, tenant, "x-1", amount="20.00", currency=gw.currency,
                        gateway=gw.name)
        assert r.status_code == 201, r.text
        await gw.pay(r.json()["payment"]["payment_id"])
        status = await wait_state(api, tenant, flow_id, "completed", within=40)
    assert "payment_found_by_status_poll" in [s["name"] for s in status["steps"]]
    assert (await balances(http, tenant))[("user_wallet", gw.currency)]["available"] == "20.00"


async def test_unknown_gateways_are_refused_and_a_tenant_default_applies(http, tenant) -> None:
    r = await topup(http, tenant, "u-1", amount="5.00", currency="EUR", gateway="paypal")
    assert r.status_code == 422 and r.json()["code"] == "unknown_gateway", r.text
    bad = await http.put("/v1/settings/payments", json={"gateway": "paypal"},
                         headers=tenant.admin)
    assert bad.status_code == 422 and bad.json()["code"] == "unknown_gateway", bad.text
    ok = await http.put("/v1/settings/payments", json={"gateway": "razorpay"},
                        headers=tenant.admin)
    assert ok.status_code == 200 and ok.json()["gateway"] == "razorpay", ok.text
    r = await topup(http, tenant, "u-2", amount="5.00", currency="INR")
    assert r.status_code == 201 and r.json()["payment"]["gateway"] == "razorpay", r.text


async def test_razorpay_checkout_handler_is_verified_server_side(http, razorpay_standin,
                                                                 tenant) -> None:
    drv = Driver("razorpay", httpx.AsyncClient(base_url=razorpay_standin.url), "INR")
    r = await topup(http, tenant, "v-1", amount="30.00", currency="INR", gateway="razorpay")
    flow_id, order_id = r.json()["flow_id"], r.json()["payment"]["payment_id"]
    await drv.drop_webhooks(flow_id)
    handed = await drv.pay(order_id)
    verify = r.json()["payment"]["razorpay"]["verify_url"]
    bad = await http.post(verify, json={**handed, "razorpay_signature": "0" * 64},
                          headers=tenant.client)
    assert bad.status_code == 400 and bad.json()["code"] == "signature_invalid", bad.text
    ok = await http.post(verify, json=handed, headers=tenant.client)
    assert ok.status_code == 200 and ok.json()["verified"] is True, ok.text
    status = await wait_state(http, tenant, flow_id, "completed")
    assert "payment_found_by_status_poll" not in [s["name"] for s in status["steps"]]
    assert (await flow_status(http, tenant, flow_id))["state"] == "completed"
    await drv.ctl.delete("/_standin/faults")
    await drv.ctl.aclose()
