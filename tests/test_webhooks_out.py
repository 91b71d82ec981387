"""Outbound webhooks in the Standard Webhooks format, verified by a receiver built on the
`standardwebhooks` package: retries with the same webhook-id, 410 disables, rotation signs
with both secrets, a delivery can be re-sent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import text
from standardwebhooks import Webhook

from tests.support import LiveServer, Tenant, eventually
from tests.test_orders import fund


@dataclass
class Receiver:
    fail_next: int = 0
    gone: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.received.append({"body": (await request.body()).decode(),
                                  "headers": dict(request.headers)})
            if self.gone:
                return Response(status_code=410)
            if self.fail_next > 0:
                self.fail_next -= 1
                return Response(status_code=500)
            return Response(status_code=204)

        return app


@pytest.fixture
async def receiver() -> Any:
    r = Receiver()
    server = await LiveServer(r.app()).start()
    yield r, server.url + "/hook"
    await server.stop()


async def dev_mode(sessions, tenant: Tenant) -> None:
    async with sessions.begin() as s:
        await s.execute(text("UPDATE tenants SET settings = settings || '{\"development\": true}'"
                             " WHERE id = :t"), {"t": tenant.id})


async def endpoint(http, tenant: Tenant, url: str, types: list[str] | None = None) -> dict:
    r = await http.post("/v1/webhook-endpoints", json={"url": url, "event_types": types or []},
                        headers=tenant.admin)
    assert r.status_code == 201, r.text
    return r.json()


async def campaign_event(http, sessions, tenant: Tenant, cid: str) -> None:
    """Create a capped campaign and fill it: donation.completed and campaign.closed."""
    await fund(sessions, tenant, 1000)
    r = await http.post("/v1/campaigns", json={
        "campaign_id": cid, "name": cid, "currency": "EUR", "target": "5.00",
        "ends_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, headers=tenant.admin)
    assert r.status_code == 201, r.text
    r = await http.post(f"/v1/campaigns/{cid}/donations", json={
        "user_id": "user-1", "amount": "5.00", "currency": "EUR"},
        headers={**tenant.client, "Idempotency-Key": f"don-{cid}"})
    assert r.status_code == 201, r.text


async def test_delivery_is_signed_and_retried_with_the_same_id(http, sessions, receiver,
                                                                tenant) -> None:
    rec, url = receiver
    await dev_mode(sessions, tenant)
    ep = await endpoint(http, tenant, url, ["campaign.closed"])
    assert ep["secret"].startswith("whsec_")
    rec.fail_next = 3
    await campaign_event(http, sessions, tenant, "c1")
    await eventually(lambda: _count(rec), lambda n: n >= 4, within=40)
    ids = {r["headers"]["webhook-id"] for r in rec.received}
    assert len(ids) == 1 and len(rec.received) == 4
    for r in rec.received:
        payload = Webhook(ep["secret"]).verify(r["body"], r["headers"])
        assert payload["type"] == "campaign.closed"
        assert payload["data"] == {"campaign_id": "c1", "reason": "target_reached"}
    deliveries = (await http.get("/v1/webhook-deliveries", headers=tenant.admin)).json()["data"]
    [d] = deliveries
    assert (d["status"], [a["status_code"] for a in d["attempts"]]) == (
        "delivered", [500, 500, 500, 204])
    # Re-sending keeps the webhook-id.
    r = await http.post(f"/v1/webhook-deliveries/{d['id']}/resend", headers=tenant.admin)
    assert r.status_code == 202
    await eventually(lambda: _count(rec), lambda n: n == 5)
    assert rec.received[-1]["headers"]["webhook-id"] == d["id"]


async def _count(rec: Receiver) -> int:
    return len(rec.received)


async def test_410_disables_the_endpoint(http, sessions, receiver, tenant) -> None:
    rec, url = receiver
    await dev_mode(sessions, tenant)
    ep = await endpoint(http, tenant, url, ["donation.completed"])
    rec.gone = True
    await campaign_event(http, sessions, tenant, "c2")

    async def listed() -> dict:
        data = (await http.get("/v1/webhook-endpoints", headers=tenant.admin)).json()["data"]
        return next(e for e in data if e["id"] == ep["id"])
    gone = await eventually(listed, lambda e: e["disabled_at"] is not None)
    assert gone["disabled_reason"] == "410 Gone"
    assert len(rec.received) == 1


async def test_rotation_signs_with_both_secrets(http, sessions, receiver, tenant) -> None:
    rec, url = receiver
    await dev_mode(sessions, tenant)
    ep = await endpoint(http, tenant, url, ["campaign.closed"])
    rotated = (await http.post(f"/v1/webhook-endpoints/{ep['id']}/rotate",
                               headers=tenant.admin)).json()
    assert rotated["secret"] != ep["secret"]
    await campaign_event(http, sessions, tenant, "c3")
    await eventually(lambda: _count(rec), lambda n: n >= 1)
    r = rec.received[0]
    assert len(r["headers"]["webhook-signature"].split(" ")) == 2
    for secret in (ep["secret"], rotated["secret"]):
        assert Webhook(secret).verify(r["body"], r["headers"])["type"] == "campaign.closed"


async def test_private_urls_need_development_mode_and_an_admin(http, tenant) -> None:
    for url in ("http://127.0.0.1:9/hook", "http://10.0.0.5/hook", "http://169.254.169.254/x",
                "http://localhost/hook"):
        r = await http.post("/v1/webhook-endpoints", json={"url": url}, headers=tenant.admin)
        assert (r.status_code, r.json()["code"]) == (422, "url_not_allowed"), url
    r = await http.post("/v1/webhook-endpoints", json={"url": "https://example.com/hook"},
                        headers=tenant.client)
    assert r.status_code == 403
    r = await http.post("/v1/webhook-endpoints", json={"url": "ftp://example.com/x"},
                        headers=tenant.admin)
    assert r.status_code == 422
    assert json.loads(json.dumps(r.json()))["code"] == "validation_error"


async def test_flows_emit_their_events(http, stripe_ctl, sessions, receiver, tenant) -> None:
    rec, url = receiver
    await dev_mode(sessions, tenant)
    ep = await endpoint(http, tenant, url)  # every event type
    r = await http.post("/v1/topups", json={"user_id": "user-1", "amount": "20.00",
                                            "currency": "EUR"},
                        headers={**tenant.client, "Idempotency-Key": "ev-topup"})
    await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}"
                          "/succeed")
    r = await http.post("/v1/orders", json={"order_id": "ev-1", "user_id": "user-1",
                                            "amount": "5.00", "currency": "EUR",
                                            "method": "wallet"},
                        headers={**tenant.client, "Idempotency-Key": "ev-order"})
    assert r.status_code == 201, r.text

    async def types() -> set[str]:
        return {Webhook(ep["secret"]).verify(x["body"], x["headers"])["type"]
                for x in rec.received}
    got = await eventually(types, lambda t: {"topup.completed", "order.paid"} <= t)
    topup = next(json.loads(x["body"]) for x in rec.received
                 if json.loads(x["body"])["type"] == "topup.completed")
    assert topup["data"]["amount"] == "20.00" and "order.paid" in got

    # wallet.updated after each balance change: credited 20.00, 5.00 held for the order, the
    # hold captured.
    async def wallet_updates() -> list[dict]:
        return [json.loads(x["body"])["data"] for x in rec.received
                if json.loads(x["body"])["type"] == "wallet.updated"]
    updates = await eventually(wallet_updates, lambda u: len(u) >= 3)
    assert sorted((u["posted"], u["pending_out"], u["available"]) for u in updates) == [
        ("15.00", "0.00", "15.00"), ("20.00", "0.00", "20.00"), ("20.00", "5.00", "15.00")
    ], updates
    assert all((u["user_id"], u["account"], u["currency"]) == ("user-1", "user_wallet", "EUR")
               for u in updates)


async def test_wallet_updated_is_recorded_only_for_a_listening_tenant(sessions, tenant) -> None:
    from tests.support import count_rows

    await fund(sessions, tenant, 500)  # no endpoint: nothing recorded for nobody
    sql = ("SELECT count(*) FROM outbox_events WHERE tenant_id = :t "
           "AND type = 'wallet.updated'")
    assert await count_rows(sessions, sql, t=tenant.id) == 0
    async with sessions.begin() as s:
        await s.execute(text(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, secret) VALUES "
            "(:i, :t, 'https://example.com/h', '{wallet.updated}', 'whsec_eA==')"),
            {"i": f"we_listen_{tenant.slug}", "t": tenant.id})
    await fund(sessions, tenant, 700)
    assert await count_rows(sessions, sql, t=tenant.id) == 1


async def test_wallet_updated_amounts_use_each_currencys_decimals(sessions) -> None:
    async with sessions() as s:
        got = (await s.execute(text(
            "SELECT money_text(1250, 'EUR'), money_text(-350, 'EUR'), money_text(5, 'USD'), "
            "money_text(1200, 'JPY'), money_text(0, 'PTS')"))).one()
    assert tuple(got) == ("12.50", "-3.50", "0.05", "1200", "0")


async def test_the_cli_rotates_the_secret_and_resends_failed_deliveries(
        http, sessions, receiver, database_url, temporal_address, tenant) -> None:
    from tests.support import run_cli

    rec, url = receiver
    await dev_mode(sessions, tenant)
    ep = await endpoint(http, tenant, url, ["campaign.closed"])
    await campaign_event(http, sessions, tenant, "c-cli")
    await eventually(lambda: _count(rec), lambda n: n >= 1)
    delivery_id = rec.received[0]["headers"]["webhook-id"]
    # As if its retries had run out (they span a day): the delivery is failed.
    async with sessions.begin() as s:
        await eventually(lambda: _status(sessions, delivery_id), lambda st: st == "delivered")
        await s.execute(text("UPDATE webhook_deliveries SET status = 'failed' WHERE id = :d"),
                        {"d": delivery_id})
    code, out, err = await run_cli(database_url, None, "webhook", "deliveries", "--tenant",
                                   tenant.slug, "--status", "failed")
    assert (code, [line.split("\t")[0] for line in out.splitlines()]) == (0, [delivery_id]), err

    code, out, err = await run_cli(database_url, None, "webhook", "rotate", "--tenant",
                                   tenant.slug, ep["id"])
    assert code == 0, err
    rotated = json.loads(out)
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != ep["secret"]
    code, out, err = await run_cli(database_url, temporal_address, "webhook", "resend",
                                   "--tenant", tenant.slug)
    assert (code, out.strip()) == (0, "1 delivery(ies) re-sent"), (out, err)
    assert f"re-sent 1/1: {delivery_id}" in err
    await eventually(lambda: _count(rec), lambda n: n >= 2)
    again = rec.received[-1]
    assert again["headers"]["webhook-id"] == delivery_id  # the same id as the first attempt
    for secret in (ep["secret"], rotated["secret"]):  # both verify during the 24 h overlap
        assert Webhook(secret).verify(again["body"], again["headers"])["type"] == "campaign.closed"
    await eventually(lambda: _status(sessions, delivery_id), lambda st: st == "delivered")


async def _status(sessions, delivery_id: str) -> str:
    async with sessions() as s:
        return (await s.execute(text("SELECT status FROM webhook_deliveries WHERE id = :d"),
                                {"d": delivery_id})).scalar_one()
