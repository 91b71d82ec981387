"""Cashback as the outside world sees it: the events of one purchase are recorded and delivered
in causal order (pending before available) with the amounts they announce; a purchase's and a
wallet's cashback figures are the ledger's, refunds and clawbacks included."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from contracts.money import format_amount, round_half_up
from contracts.rewards import cashback_for
from tests.support import LiveServer, Tenant, create_tenant, eventually, set_rewards
from tests.test_refunds import paid_order, refund
from tests.test_webhooks_out import Receiver, dev_mode, endpoint

EXAMPLES = int(os.environ.get("WALLETFLOW_CASHBACK_EXAMPLES", "4"))

CASHBACK_EVENTS = ["cashback.pending", "cashback.available", "cashback.reversed"]


@pytest.fixture
async def hook() -> Any:
    r = Receiver()
    server = await LiveServer(r.app()).start()
    yield r, server.url + "/hook"
    await server.stop()


async def recorded(sessions, tenant: Tenant) -> list[tuple[str, dict[str, Any]]]:
    """The tenant's cashback events as the outbox holds them, in the order they were recorded."""
    async with sessions() as s:
        rows = (await s.execute(text(
            "SELECT type, payload FROM outbox_events WHERE tenant_id = :t "
            "AND type LIKE 'cashback.%' ORDER BY id"), {"t": tenant.id})).all()
    return [(r.type, dict(r.payload)) for r in rows]


def by_order(events: list[tuple[str, dict[str, Any]]]) -> dict[str, list[tuple[str, str]]]:
    """(type, amount) per store order id, in the order given."""
    out: dict[str, list[tuple[str, str]]] = {}
    for type_, payload in events:
        out.setdefault(payload["store_order_id"], []).append((type_, payload["amount"]))
    return out


async def test_cashback_events_come_in_causal_order_with_their_amounts(
        http, sessions, hook, tenant) -> None:
    rec, url = hook
    await dev_mode(sessions, tenant)
    await endpoint(http, tenant, url, CASHBACK_EVENTS)
    await set_rewards(sessions, tenant, return_window_seconds=0)
    amounts = {"E-1": "60.00", "E-2": "89.50", "E-3": "25.99", "E-4": "10.00"}
    cashback = {"E-1": "6.00", "E-2": "8.95", "E-3": "2.60", "E-4": "1.00"}
    for order_id, amount in amounts.items():
        r = await http.post("/v1/purchases", json={
            "order_id": order_id, "user_id": "user-1", "amount": amount, "currency": "EUR"},
            headers={**tenant.client, "Idempotency-Key": f"p-{order_id}"})
        assert r.status_code == 201, r.text
    expected = {o: [("cashback.pending", c), ("cashback.available", c)]
                for o, c in cashback.items()}

    async def outbox() -> dict[str, list[tuple[str, str]]]:
        return by_order(await recorded(sessions, tenant))
    assert await eventually(outbox, lambda e: sum(map(len, e.values())) == 8) == expected

    async def delivered() -> list[tuple[str, dict[str, Any]]]:
        bodies = [json.loads(r["body"]) for r in rec.received]
        return [(b["type"], b["data"]) for b in bodies]
    got = await eventually(delivered, lambda d: len(d) >= 8, within=30)
    assert by_order(got) == expected


async def report(http, tenant: Tenant, order_id: str, amount: str) -> None:
    r = await http.post("/v1/purchases", json={
        "order_id": order_id, "user_id": "user-1", "amount": amount, "currency": "EUR"},
        headers={**tenant.client, "Idempotency-Key": f"p-{order_id}"})
    assert r.status_code == 201, r.text


async def purchase_view(http, tenant: Tenant, order_id: str) -> dict[str, Any]:
    r = await http.get(f"/v1/purchases/{order_id}", headers=tenant.client)
    assert r.status_code == 200, r.text
    return r.json()


async def wallet_cashback(http, tenant: Tenant) -> dict[str, str]:
    r = await http.get("/v1/wallets/user-1", headers=tenant.client)
    assert r.status_code == 200, r.text
    [eur] = [c for c in r.json()["cashback"] if c["currency"] == "EUR"]
    return eur


async def ledger_sums(sessions, tenant: Tenant) -> dict[str, int]:
    """The tenant's cashback, clawbacks and refunds straight from the transfers (one user, one
    purchase per tenant here)."""
    async with sessions() as s:
        rows = (await s.execute(text(
            "SELECT kind || ':' || state, sum(amount) FROM transfers WHERE tenant_id = :t "
            "GROUP BY kind, state"), {"t": tenant.id})).all()
    got = {k: int(v) for k, v in rows}
    return {"pending": got.get("cashback:pending", 0), "posted": got.get("cashback:posted", 0),
            "clawed": got.get("cashback_clawback:posted", 0),
            "refunded": got.get("refund:posted", 0)}


async def test_a_clawback_shows_in_the_purchase_and_the_wallet(http, sessions, tenant) -> None:
    """€60 order with €6.00 cashback available; a €30 refund claws back €3.00."""
    await set_rewards(sessions, tenant, return_window_seconds=0)
    await paid_order(http, sessions, tenant, "C-60", amount="60.00", fund_with=6000)
    await report(http, tenant, "C-60", "60.00")
    await eventually(lambda: purchase_view(http, tenant, "C-60"),
                     lambda p: p["state"] == "available")
    r = await refund(http, tenant, "C-60", "claw-30", "30.00")
    assert (r.status_code, r.json()["state"]) == (201, "refunded"), r.text
    view = await purchase_view(http, tenant, "C-60")
    assert {k: view["amounts"][k] for k in ("cashback", "cashback_clawed_back", "refunded")} == {
        "cashback": "3.00", "cashback_clawed_back": "3.00", "refunded": "30.00"}
    assert await wallet_cashback(http, tenant) == {
        "currency": "EUR", "pending": "0.00", "available": "3.00", "clawed_back": "3.00"}
    assert await ledger_sums(sessions, tenant) == {
        "pending": 0, "posted": 600, "clawed": 300, "refunded": 3000}


@st.composite
def refund_plans(draw: st.DrawFn) -> tuple[int, bool, list[int]]:
    """An order amount (cents), whether its cashback is still pending, and partial refunds
    that never exceed it (the last may refund the rest)."""
    amount = draw(st.integers(min_value=10, max_value=20000))  # earns ≥ 0.01
    refunds, left = [], amount
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if left == 0:
            break
        part = draw(st.integers(min_value=1, max_value=left))
        refunds.append(part)
        left -= part
    return amount, draw(st.booleans()), refunds


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=refund_plans())
@example(plan=(10000, False, [3333, 3333, 3334]))  # thirds: the clawbacks add up to all 10.00
async def test_views_follow_the_ledger_through_partial_refunds(http, sessions, plan) -> None:
    amount, pending, refunds = plan
    tenant = await create_tenant(sessions)
    await set_rewards(sessions, tenant, return_window_seconds=3600 if pending else 0)
    price = format_amount(amount, "EUR")
    await paid_order(http, sessions, tenant, "H-1", amount=price, fund_with=amount)
    await report(http, tenant, "H-1", price)
    await eventually(lambda: purchase_view(http, tenant, "H-1"),
                     lambda p: p["state"] == ("pending" if pending else "available"))
    earned = cashback_for(amount, "0.10")
    refunded = 0
    for n, part in enumerate(refunds):
        r = await refund(http, tenant, "H-1", f"h-{n}", format_amount(part, "EUR"))
        assert (r.status_code, r.json()["state"]) == (201, "refunded"), r.text
        refunded += part
        view = await eventually(lambda: purchase_view(http, tenant, "H-1"),
                                lambda p, r=refunded: p["amounts"]["refunded"] ==
                                format_amount(r, "EUR"))
        sums = await ledger_sums(sessions, tenant)
        assert sums["refunded"] == refunded
        kept = (cashback_for(amount - refunded, "0.10") if pending else
                round_half_up(Decimal(earned) * (amount - refunded) / amount))
        fmt = lambda v: format_amount(v, "EUR")  # noqa: E731
        assert {k: view["amounts"][k] for k in (
            "cashback", "cashback_pending", "cashback_clawed_back")} == {
            "cashback": fmt(sums["pending"] + sums["posted"] - sums["clawed"]),
            "cashback_pending": fmt(sums["pending"]), "cashback_clawed_back": fmt(sums["clawed"])}
        assert view["amounts"]["cashback"] == fmt(kept), (plan, sums)
        assert await wallet_cashback(http, tenant) == {
            "currency": "EUR", "pending": fmt(sums["pending"]),
            "available": fmt(sums["posted"] - sums["clawed"]), "clawed_back": fmt(sums["clawed"])}
