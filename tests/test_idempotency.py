"""Idempotency that never lies: concurrent duplicates of one key get one first answer (the
others 409 ``idempotency_in_progress`` with Retry-After while it is in flight, the stored answer
with ``Idempotent-Replayed`` once final); a stored answer is replayed before any business
validation; a refused or failed start leaves no claim behind; one rule for "nothing left to
refund"."""

from __future__ import annotations

import asyncio

from tests.support import Tenant, balances, count_rows, tenant_transfers, topup, wait_state
from tests.test_donations import campaign, donate
from tests.test_orders import fund
from tests.test_refunds import paid_order, refund
from tests.test_withdrawals import onboard, withdraw


async def test_concurrent_duplicates_get_one_first_answer(http, stripe_ctl, sessions,
                                                          tenant) -> None:
    flow_id = f"{tenant.slug}:topup:dup-1"
    # The gateway answers slowly, so the duplicates arrive while the first is in flight.
    await stripe_ctl.post("/_standin/faults", json={
        "operation": "payment_intents.create", "mode": "delay", "delay_seconds": 1.0,
        "count": 1, "match": {"flow_id": flow_id}})
    rs = await asyncio.gather(*(topup(http, tenant, "dup-1", amount="7.00", currency="EUR")
                                for _ in range(20)))
    first = [r for r in rs if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(first) == 1, [(r.status_code, dict(r.headers)) for r in rs]
    for r in rs:
        if r.status_code == 409:
            assert r.json()["code"] == "idempotency_in_progress", r.text
            assert int(r.headers["retry-after"]) >= 1
            assert r.headers["content-type"] == "application/problem+json"
        elif r is not first[0]:
            assert (r.status_code, r.headers["idempotent-replayed"]) == (201, "true"), r.text
            assert r.json() == first[0].json()
    assert sum(r.status_code == 409 for r in rs) >= 1  # the duplicates met it in flight
    again = await topup(http, tenant, "dup-1", amount="7.00", currency="EUR")
    assert (again.status_code, again.headers["idempotent-replayed"]) == (201, "true")
    assert again.json() == first[0].json()
    assert await count_rows(sessions, "SELECT count(*) FROM flows WHERE tenant_id = :t",
                            t=tenant.id) == 1
    intents = (await stripe_ctl.get("/_standin/payment_intents",
                                    params={"flow_id": flow_id})).json()["data"]
    assert [i["id"] for i in intents] == [first[0].json()["payment"]["payment_id"]]
    await stripe_ctl.post(f"/_standin/payment_intents/{intents[0]['id']}/succeed")
    await wait_state(http, tenant, flow_id, "completed")
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "7.00"
    assert await tenant_transfers(sessions, tenant) == 1


async def test_a_refund_replays_before_it_is_validated(http, sessions, tenant) -> None:
    """Pay 10.00, refund 6.00 under r1: the same request again replays 201 (not 422 "at most
    4.00"), and still does after the rest is refunded."""
    await paid_order(http, sessions, tenant, "o-10", amount="10.00", fund_with=1000)
    r1 = await refund(http, tenant, "o-10", "r1", "6.00")
    assert (r1.status_code, r1.json()["state"]) == (201, "refunded"), r1.text
    again = await refund(http, tenant, "o-10", "r1", "6.00")
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, "true"), \
        again.text
    assert again.json() == r1.json()
    r2 = await refund(http, tenant, "o-10", "r2", "4.00")
    assert r2.status_code == 201, r2.text
    for key, amount, first in (("r1", "6.00", r1), ("r2", "4.00", r2)):
        again = await refund(http, tenant, "o-10", key, amount)
        assert (again.status_code, again.json()) == (201, first.json()), again.text
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "10.00"


async def test_nothing_left_to_refund_is_one_rule(http, sessions, tenant) -> None:
    """A fully refunded order: any amount exceeds what is left (422, "at most 0.00 EUR");
    an order never paid is not refundable (409)."""
    await paid_order(http, sessions, tenant, "o-full", amount="10.00", fund_with=1000)
    assert (await refund(http, tenant, "o-full", "f1", "10.00")).status_code == 201
    r = await refund(http, tenant, "o-full", "f2", "0.01")
    assert (r.status_code, r.json()["code"]) == (422, "refund_exceeds_paid"), r.text
    assert r.json()["detail"] == "at most 0.00 EUR can still be refunded"
    r = await http.post("/v1/orders", json={"order_id": "o-card", "user_id": "user-1",
                                            "amount": "5.00", "currency": "EUR",
                                            "method": "card"},
                        headers={**tenant.client, "Idempotency-Key": "pay-card"})
    assert r.status_code == 201, r.text  # awaiting its card payment
    r = await refund(http, tenant, "o-card", "f3", "1.00")
    assert (r.status_code, r.json()["code"]) == (409, "not_refundable"), r.text


async def test_a_withdrawal_replays_before_the_balance_is_checked(http, stripe_ctl, sessions,
                                                                  tenant: Tenant) -> None:
    await fund(sessions, tenant, 3000)
    await onboard(http, stripe_ctl, tenant)
    w1 = await withdraw(http, tenant, "w1", amount="30.00")
    assert w1.status_code == 202, w1.text
    again = await withdraw(http, tenant, "w1", amount="30.00")  # the funds are now held
    assert (again.status_code, again.json()) == (202, w1.json()), again.text
    other = await withdraw(http, tenant, "w2", amount="30.00")
    assert (other.status_code, other.json()["code"]) == (402, "insufficient_funds")


async def test_a_donation_replays_after_the_campaign_closed(http, sessions, tenant) -> None:
    await fund(sessions, tenant, 5000)
    await campaign(http, tenant, "closing", target="20.00")
    d1 = await donate(http, tenant, "closing", "d1", "20.00")  # reaches the target: closes it
    assert (d1.status_code, d1.json()["campaign_closed"]) == (201, True), d1.text
    again = await donate(http, tenant, "closing", "d1", "20.00")
    assert (again.status_code, again.json()) == (201, d1.json()), again.text
    other = await donate(http, tenant, "closing", "d2", "1.00")
    assert (other.status_code, other.json()["code"]) == (409, "campaign_closed")

