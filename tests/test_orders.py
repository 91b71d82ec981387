"""Order-payment end to end: wallet, points, card and split; holds and compensation; an order
paid at most once; insufficient funds is a final, clear failure."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.ledger import AccountRef, TransferRequest
from contracts.money import POINTS
from db.ledger import LedgerRepository
from tests.support import Tenant, balances, count_rows, eventually, tenant_transfers


async def fund(sessions: async_sessionmaker[AsyncSession], tenant: Tenant, amount: int,
               currency: str = "EUR", user: str = "user-1") -> None:
    kind, source = (("user_points", "points_issuance") if currency == POINTS
                    else ("user_wallet", "gateway_clearing"))
    async with sessions.begin() as s:
        await LedgerRepository(s).post(tenant.id, "seed", [TransferRequest(
            f"seed:{user}:{currency}:{amount}", AccountRef(source, "tenant", currency),
            AccountRef(kind, user, currency), amount, currency, "seed")])


async def pay(http, tenant: Tenant, key: str, **body) -> object:
    body.setdefault("user_id", tenant.user_id)
    return await http.post("/v1/orders", json=body,
                           headers={**tenant.client, "Idempotency-Key": key})


async def order(http, tenant: Tenant, order_id: str) -> dict:
    r = await http.get(f"/v1/orders/{order_id}", headers=tenant.client)
    assert r.status_code == 200, r.text
    return r.json()


async def wait_status(http, tenant: Tenant, order_id: str, status: str) -> dict:
    return await eventually(lambda: order(http, tenant, order_id),
                            lambda o: o["status"] == status, within=30)


def available(b: dict, kind: str = "user_wallet", cur: str = "EUR") -> str:
    return b[(kind, cur)]["available"]


async def revenue(http, tenant: Tenant) -> dict:
    data = (await http.get("/v1/ledger/accounts", headers=tenant.admin)).json()["data"]
    return {a["currency"]: a["posted"] for a in data if a["account"] == "merchant_revenue"}


async def test_wallet_payment_captures_the_hold(http, sessions, tenant) -> None:
    await fund(sessions, tenant, 10000)
    r = await pay(http, tenant, "o-1", order_id="1001", amount="40.00", currency="EUR",
                  method="wallet")
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "paid"
    assert (await order(http, tenant, "1001"))["status"] == "paid"
    b = await balances(http, tenant)
    assert (b[("user_wallet", "EUR")]["posted"], available(b)) == ("60.00", "60.00")
    assert await revenue(http, tenant) == {"EUR": "40.00"}
    # The same request again: the same answer, nothing moves twice.
    again = await pay(http, tenant, "o-1", order_id="1001", amount="40.00", currency="EUR",
                      method="wallet")
    assert again.json() == r.json() and again.headers["idempotent-replayed"] == "true"
    # The same order under another key is refused: an order is paid at most once.
    other = await pay(http, tenant, "o-1b", order_id="1001", amount="40.00", currency="EUR",
                      method="wallet")
    assert (other.status_code, other.json()["code"]) == (409, "flow_exists")
    assert available(await balances(http, tenant)) == "60.00"


async def test_points_payment(http, sessions, tenant) -> None:
    await fund(sessions, tenant, 600, POINTS)
    r = await pay(http, tenant, "p-1", order_id="2002", amount="550", currency="PTS",
                  method="points")
    assert (r.status_code, r.json()["state"]) == (201, "paid")
    assert available(await balances(http, tenant), "user_points", POINTS) == "50"
    assert await revenue(http, tenant) == {"PTS": "550"}


async def test_insufficient_funds_is_final_and_moves_nothing(http, sessions, tenant) -> None:
    await fund(sessions, tenant, 1000)
    r = await pay(http, tenant, "poor-1", order_id="3003", amount="10.01", currency="EUR",
                  method="wallet")
    assert (r.status_code, r.json()["code"]) == (402, "insufficient_funds")
    assert r.headers["content-type"] == "application/problem+json"
    assert (await order(http, tenant, "3003"))["status"] == "failed"
    b = await balances(http, tenant)
    assert (b[("user_wallet", "EUR")]["posted"], available(b)) == ("10.00", "10.00")
    assert await tenant_transfers(sessions, tenant) == 1  # only the seed


async def test_card_payment_through_the_gateway(http, stripe_ctl, sessions, tenant) -> None:
    r = await pay(http, tenant, "card-1", order_id="4004", amount="25.00", currency="EUR",
                  method="card")
    assert (r.status_code, r.json()["state"]) == (201, "awaiting_payment"), r.text
    await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}"
                          "/succeed")
    await wait_status(http, tenant, "4004", "paid")
    assert await revenue(http, tenant) == {"EUR": "25.00"}


async def test_split_payment(http, stripe_ctl, sessions, tenant) -> None:
    await fund(sessions, tenant, 3000)
    r = await pay(http, tenant, "split-1", order_id="5005", amount="50.00", currency="EUR",
                  method="split", wallet_amount="30.00")
    assert r.status_code == 201, r.text
    assert r.json()["parts"] == {"wallet": "30.00", "card": "20.00", "points": "0"}
    b = await balances(http, tenant)
    assert (b[("user_wallet", "EUR")]["pending_out"], available(b)) == ("30.00", "0.00")
    await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}"
                          "/succeed")
    await wait_status(http, tenant, "5005", "paid")
    b = await balances(http, tenant)
    assert (b[("user_wallet", "EUR")]["posted"], b[("user_wallet", "EUR")]["pending_out"]) == (
        "0.00", "0.00")
    assert await revenue(http, tenant) == {"EUR": "50.00"}


async def test_card_declined_after_the_hold_voids_it(http, stripe_ctl, sessions, tenant) -> None:
    await fund(sessions, tenant, 3000)
    r = await pay(http, tenant, "split-2", order_id="6006", amount="50.00", currency="EUR",
                  method="split", wallet_amount="30.00")
    pi = r.json()["payment"]["payment_id"]
    await stripe_ctl.post(f"/_standin/payment_intents/{pi}/fail")
    o = await wait_status(http, tenant, "6006", "failed")
    assert "card_declined" in o["error"]
    assert "holds_voided" in [s["name"] for s in o["flow"]["steps"]]
    b = await balances(http, tenant)
    assert (b[("user_wallet", "EUR")]["posted"], available(b),
            b[("user_wallet", "EUR")]["pending_out"]) == ("30.00", "30.00", "0.00")
    assert await revenue(http, tenant) == {"EUR": "0.00"}
    intents = (await stripe_ctl.get("/_standin/payment_intents",
                                    params={"flow_id": r.json()["flow_id"]})).json()["data"]
    assert [i["status"] for i in intents] == ["canceled"]


async def test_six_concurrent_1000_payments_on_5000(http, sessions, tenant) -> None:
    await fund(sessions, tenant, 500000)
    responses = await asyncio.gather(*(
        pay(http, tenant, f"c-{i}", order_id=f"70{i}", amount="1000.00", currency="EUR",
            method="wallet") for i in range(6)))
    assert sorted(r.status_code for r in responses) == [201] * 5 + [402]
    b = await balances(http, tenant)
    assert (b[("user_wallet", "EUR")]["posted"], available(b)) == ("0.00", "0.00")
    assert await count_rows(sessions, "SELECT count(*) FROM orders WHERE tenant_id = :t AND "
                            "status = 'paid'", t=tenant.id) == 5


async def test_100_concurrent_captures_of_one_hold_capture_once(sessions, tenant) -> None:
    await fund(sessions, tenant, 1000)
    async with sessions.begin() as s:
        await LedgerRepository(s).post(tenant.id, "o", [TransferRequest(
            "o:hold", AccountRef("user_wallet", "user-1", "EUR"),
            AccountRef("merchant_revenue", "tenant", "EUR"), 400, "EUR", "order_payment")],
            pending=True)

    async def capture() -> bool:
        async with sessions.begin() as s:
            return (await LedgerRepository(s).resolve(tenant.id, "o:hold", "posted")).replayed

    replayed = await asyncio.gather(*(capture() for _ in range(100)))
    assert replayed.count(False) == 1
    async with sessions() as s:
        [wallet] = await LedgerRepository(s).balances(tenant.id, "user-1")
    assert (wallet.posted, wallet.pending_out) == (600, 0)


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"order_id": "b1", "amount": "0", "currency": "EUR", "method": "wallet"}, 422,
     "invalid_amount"),
    ({"order_id": "b1", "amount": "-1.00", "currency": "EUR", "method": "wallet"}, 422,
     "invalid_amount"),
    ({"order_id": "b1", "amount": "1.001", "currency": "EUR", "method": "wallet"}, 422,
     "invalid_amount"),
    ({"order_id": "b1", "amount": "5", "currency": "EUR", "method": "points"}, 422,
     "invalid_currency"),
    ({"order_id": "b1", "amount": "5", "currency": "PTS", "method": "wallet"}, 422,
     "invalid_currency"),
    ({"order_id": "b1", "amount": "5.00", "currency": "EUR", "method": "split",
      "wallet_amount": "5.00"}, 422, "invalid_amount"),
    ({"order_id": "b1", "amount": "5.00", "currency": "EUR", "method": "cash"}, 422,
     "validation_error"),
    ({"order_id": "b1", "amount": "5.00", "currency": "EUR", "method": "wallet",
      "user_id": "nobody"}, 404, "user_not_found"),
])
async def test_bad_orders_write_nothing(http, sessions, tenant, body, status, code) -> None:
    r = await pay(http, tenant, "bad-1", **body)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert await count_rows(sessions, "SELECT count(*) FROM orders WHERE tenant_id = :t",
                            t=tenant.id) == 0
    assert await count_rows(sessions, "SELECT count(*) FROM flows WHERE tenant_id = :t",
                            t=tenant.id) == 0
    r = await http.post("/v1/orders", json={**body, "user_id": "user-1"},
                        headers={**tenant.admin, "Idempotency-Key": "bad-2"})
    assert r.status_code == 403
