"""Campaigns and donations: money and points, points earned, closed and unknown campaigns
refused, a capped target never overshot by concurrent donations, end dates close durably."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from contracts.money import POINTS
from tests.support import Tenant, balances, count_rows, eventually
from tests.test_orders import fund


async def campaign(http, tenant: Tenant, campaign_id: str, target: str = "100.00",
                   currency: str = "EUR", ends_in: timedelta = timedelta(days=30),
                   capped: bool = True) -> dict:
    r = await http.post("/v1/campaigns", json={
        "campaign_id": campaign_id, "name": f"Campaign {campaign_id}", "currency": currency,
        "target": target, "ends_at": (datetime.now(UTC) + ends_in).isoformat(),
        "capped": capped}, headers=tenant.admin)
    assert r.status_code == 201, r.text
    return r.json()


async def donate(http, tenant: Tenant, campaign_id: str, key: str, amount: str,
                 currency: str = "EUR", user_id: str = "user-1") -> object:
    return await http.post(f"/v1/campaigns/{campaign_id}/donations",
                           json={"user_id": user_id, "amount": amount, "currency": currency},
                           headers={**tenant.client, "Idempotency-Key": key})


async def test_money_donation_earns_points(http, sessions, tenant) -> None:
    await fund(sessions, tenant, 5000)
    c = await campaign(http, tenant, "water")
    assert (c["raised"], c["status"], c["donors"]) == ("0.00", "open", 0)
    r = await donate(http, tenant, "water", "d-1", "25.50")
    assert (r.status_code, r.json()["points_earned"]) == (201, "25"), r.text
    again = await donate(http, tenant, "water", "d-1", "25.50")
    assert again.json() == r.json()
    c = (await http.get("/v1/campaigns/water", headers=tenant.client)).json()
    assert (c["raised"], c["donors"], c["percent_of_target"]) == ("25.50", 1, "25.5")
    b = await balances(http, tenant)
    assert (b[("user_wallet", "EUR")]["available"], b[("user_points", POINTS)]["available"]) == (
        "24.50", "25")
    history = (await http.get("/v1/users/user-1/donations", headers=tenant.client)).json()
    assert [(d["campaign_id"], d["amount"]) for d in history["data"]] == [("water", "25.50")]
    # a donation is a flow like any other: its status reads through GET /v1/flows/{id}
    status = await http.get(f"/v1/flows/{r.json()['flow_id']}", headers=tenant.client)
    assert status.status_code == 200, status.text
    assert (status.json()["kind"], status.json()["state"]) == ("donation", "completed")
    assert status.json()["amounts"] == {"amount": "25.50", "currency": "EUR"}


async def test_points_donation(http, sessions, tenant) -> None:
    await fund(sessions, tenant, 300, POINTS)
    await campaign(http, tenant, "trees", target="1000", currency=POINTS)
    r = await donate(http, tenant, "trees", "p-1", "200", currency=POINTS)
    assert r.status_code == 201, r.text
    assert (await balances(http, tenant))[("user_points", POINTS)]["available"] == "100"
    r = await donate(http, tenant, "trees", "p-2", "200", currency=POINTS)
    assert (r.status_code, r.json()["code"]) == (402, "insufficient_funds")


async def test_capped_target_is_never_overshot(http, sessions, tenant) -> None:
    await fund(sessions, tenant, 100000)
    await campaign(http, tenant, "cap", target="100.00")
    responses = await asyncio.gather(*(donate(http, tenant, "cap", f"c-{i}", "30.00")
                                       for i in range(6)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 3, [r.text for r in responses]
    c = (await http.get("/v1/campaigns/cap", headers=tenant.client)).json()
    assert (c["raised"], c["status"]) == ("90.00", "open")
    r = await donate(http, tenant, "cap", "c-last", "10.00")  # exactly the target: closes it
    assert (r.status_code, r.json()["campaign_closed"]) == (201, True)
    c = (await http.get("/v1/campaigns/cap", headers=tenant.client)).json()
    assert (c["raised"], c["status"], c["closed_reason"]) == ("100.00", "closed",
                                                             "target_reached")
    r = await donate(http, tenant, "cap", "c-after", "1.00")
    assert (r.status_code, r.json()["code"]) == (409, "campaign_closed")
    assert await count_rows(sessions, "SELECT count(*) FROM outbox_events WHERE tenant_id = :t "
                            "AND type = 'campaign.closed'", t=tenant.id) == 1


async def test_end_date_closes_the_campaign(http, sessions, tenant) -> None:
    await fund(sessions, tenant, 1000)
    await campaign(http, tenant, "short", ends_in=timedelta(seconds=2))

    async def status() -> str:
        return (await http.get("/v1/campaigns/short", headers=tenant.client)).json()["status"]
    await eventually(status, lambda s: s == "closed", within=30)
    c = (await http.get("/v1/campaigns/short", headers=tenant.client)).json()
    assert c["closed_reason"] == "ended"
    r = await donate(http, tenant, "short", "late", "1.00")
    assert (r.status_code, r.json()["code"]) == (409, "campaign_closed")


async def test_bad_donations_write_nothing(http, sessions, tenant) -> None:
    await fund(sessions, tenant, 1000)
    await campaign(http, tenant, "ok")
    cases = [
        ("nope", {"amount": "1.00", "currency": "EUR"}, 404, "campaign_not_found"),
        ("ok", {"amount": "1.00", "currency": "USD"}, 422, "currency_mismatch"),
        ("ok", {"amount": "0", "currency": "EUR"}, 422, "invalid_amount"),
        ("ok", {"amount": "-2.00", "currency": "EUR"}, 422, "invalid_amount"),
        ("ok", {"amount": "1.001", "currency": "EUR"}, 422, "invalid_amount"),
        ("ok", {"amount": "11.00", "currency": "EUR"}, 402, "insufficient_funds"),
    ]
    for cid, body, status, code in cases:
        r = await http.post(f"/v1/campaigns/{cid}/donations", json={"user_id": "user-1", **body},
                            headers={**tenant.client, "Idempotency-Key": f"bad-{cid}-{code}"})
        assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert await count_rows(sessions, "SELECT count(*) FROM transfers WHERE tenant_id = :t AND "
                            "kind = 'donation'", t=tenant.id) == 0
    r = await http.post("/v1/campaigns", json={"campaign_id": "x", "name": "x",
                                               "currency": "EUR", "target": "1.00",
                                               "ends_at": "2030-01-01T00:00:00Z"},
                        headers=tenant.client)
    assert r.status_code == 403
