"""The long windows on Temporal's time-skipping test server: a withdrawal nobody decides on
expires after the default 72 hours (hold released), and a campaign closes at its end date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support import balances
from tests.test_orders import fund
from tests.test_purchase_window import outcome_of, skipping  # noqa: F401 - the shared fixture
from tests.test_withdrawals import onboard


async def test_undecided_withdrawal_expires_after_72_hours(skipping, sessions,  # noqa: F811
                                                           http, stripe_ctl, tenant) -> None:
    await fund(sessions, tenant, 10000)
    await onboard(http, stripe_ctl, tenant)  # through the session's API (its webhooks)
    env, http = skipping
    r = await http.post("/v1/withdrawals", json={
        "user_id": "user-1", "amount": "40.00", "currency": "EUR", "method": "bank_transfer"},
        headers={**tenant.client, "Idempotency-Key": "exp-1"})
    assert r.json()["state"] == "awaiting_approval", r.text
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "60.00"
    assert await outcome_of(env, r.json()["flow_id"]) == "expired"
    wallet = (await balances(http, tenant))[("user_wallet", "EUR")]
    assert (wallet["posted"], wallet["available"]) == ("100.00", "100.00")
    status = (await http.get(f"/v1/withdrawals/{r.json()['flow_id']}",
                             headers=tenant.admin)).json()
    held = (datetime.fromisoformat(status["updated_at"])
            - datetime.fromisoformat(status["created_at"]))
    assert timedelta(hours=72) <= held < timedelta(hours=72, minutes=1)


async def test_campaign_closes_at_its_end_date(skipping, sessions, tenant) -> None:  # noqa: F811
    env, http = skipping
    r = await http.post("/v1/campaigns", json={
        "campaign_id": "winter", "name": "Winter coats", "currency": "EUR", "target": "1000.00",
        "ends_at": (datetime.now(UTC) + timedelta(days=10)).isoformat()}, headers=tenant.admin)
    assert r.status_code == 201, r.text
    assert await outcome_of(env, f"{tenant.slug}:campaign:winter") == "ended"
    c = (await http.get("/v1/campaigns/winter", headers=tenant.client)).json()
    assert (c["status"], c["closed_reason"]) == ("closed", "ended")
