"""Refunds: never more than was paid (even concurrently), to the wallet or the card, admin
approval above the threshold (the requester cannot approve), cashback clawed back."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import text

from db.tenants import TenantRepository
from tests.support import Tenant, balances, count_rows, eventually, set_rewards
from tests.test_orders import fund, order, pay, revenue


async def paid_order(http, sessions, tenant: Tenant, order_id: str, amount: str = "100.00",
                     method: str = "wallet", fund_with: int = 10000) -> dict:
    if fund_with:
        await fund(sessions, tenant, fund_with)
    r = await pay(http, tenant, f"pay-{order_id}", order_id=order_id, amount=amount,
                  currency="EUR", method=method)
    assert r.status_code == 201, r.text
    return r.json()


async def refund(http, tenant: Tenant, order_id: str, key: str, amount: str,
                 destination: str = "wallet", headers: dict | None = None) -> object:
    return await http.post(f"/v1/orders/{order_id}/refunds", json={
        "amount": amount, "currency": "EUR", "destination": destination},
        headers={**(headers or tenant.client), "Idempotency-Key": key})


async def test_partial_then_full_refund_to_the_wallet(http, sessions, tenant) -> None:
    await paid_order(http, sessions, tenant, "r-1")
    r = await refund(http, tenant, "r-1", "rf-1", "30.00")
    assert (r.status_code, r.json()["state"]) == (201, "refunded"), r.text
    o = await order(http, tenant, "r-1")
    assert o["status"] == "partially_refunded"
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "30.00"
    again = await refund(http, tenant, "r-1", "rf-1", "30.00")  # same key: one refund
    assert again.json() == r.json()
    r = await refund(http, tenant, "r-1", "rf-2", "70.00")
    assert r.status_code == 201
    assert (await order(http, tenant, "r-1"))["status"] == "refunded"
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "100.00"
    r = await refund(http, tenant, "r-1", "rf-3", "0.01")
    assert (r.status_code, r.json()["code"]) in ((409, "not_refundable"),
                                                 (422, "refund_exceeds_paid"))
    assert await revenue(http, tenant) == {"EUR": "0.00"}


async def test_two_concurrent_60_refunds_on_100(http, sessions, tenant) -> None:
    await paid_order(http, sessions, tenant, "r-2")
    a, b = await asyncio.gather(refund(http, tenant, "r-2", "c-a", "60.00"),
                                refund(http, tenant, "r-2", "c-b", "60.00"))
    codes = sorted([a.status_code, b.status_code])
    assert codes == [201, 422], (a.text, b.text)
    refused = a if a.status_code == 422 else b
    assert refused.json()["code"] == "refund_exceeds_paid"
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "60.00"
    assert await count_rows(sessions, "SELECT refunded FROM orders WHERE tenant_id = :t AND "
                            "order_id = 'r-2'", t=tenant.id) == 6000


async def second_admin(sessions, tenant: Tenant, actor: str = "admin-bob") -> dict:
    async with sessions.begin() as s:
        key = await TenantRepository(s).create_key(tenant.id, ["admin"], actor)
    return {"Authorization": f"Bearer {key}"}


async def needs_approval_above(sessions, tenant: Tenant, threshold: str) -> None:
    async with sessions.begin() as s:
        await s.execute(text(
            "UPDATE tenants SET settings = jsonb_set(settings, '{refunds}', CAST(:r AS jsonb)) "
            "WHERE id = :t"), {"r": json.dumps({"approval_threshold": {"EUR": threshold}}),
                               "t": tenant.id})


async def test_large_refund_waits_for_an_admin(http, sessions, tenant) -> None:
    await needs_approval_above(sessions, tenant, "50.00")
    await paid_order(http, sessions, tenant, "r-3")
    small = await refund(http, tenant, "r-3", "small", "10.00")
    assert small.json()["state"] == "refunded"  # below the threshold: no approval
    r = await refund(http, tenant, "r-3", "big", "60.00")
    assert (r.status_code, r.json()["state"]) == (202, "awaiting_approval"), r.text
    flow_id = r.json()["flow_id"]
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "10.00"
    r = await http.post(f"/v1/refunds/{flow_id}/approve", json={}, headers=tenant.client)
    assert r.status_code == 403  # a client key cannot approve
    r = await http.post(f"/v1/refunds/{flow_id}/approve", json={}, headers=tenant.admin)
    assert r.status_code == 200, r.text

    async def state() -> str:
        return (await http.get(f"/v1/refunds/{flow_id}", headers=tenant.client)).json()["state"]
    await eventually(state, lambda s: s == "refunded")
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "70.00"


async def test_rejected_refund_moves_nothing_and_requester_cannot_approve(
        http, sessions, temporal_env, tenant) -> None:
    from contracts.approvals import ApprovalDecision

    await needs_approval_above(sessions, tenant, "50.00")
    await paid_order(http, sessions, tenant, "r-4")
    bob = await second_admin(sessions, tenant)  # admins as of the request may decide
    # An admin requests the refund: that admin cannot approve it, another one can decide.
    r = await refund(http, tenant, "r-4", "by-admin", "80.00", headers=tenant.admin)
    flow_id = r.json()["flow_id"]
    own = await http.post(f"/v1/refunds/{flow_id}/approve", json={}, headers=tenant.admin)
    assert (own.status_code, own.json()["code"]) == (403, "requester_cannot_approve")
    # A signal naming someone who is not an admin is ignored and recorded.
    handle = temporal_env.client.get_workflow_handle(flow_id)
    await handle.signal("decision", ApprovalDecision(admin="mallory", approve=True))
    r = await http.post(f"/v1/refunds/{flow_id}/reject", json={"reason": "fraud"}, headers=bob)
    assert (r.status_code, r.json().get("decision")) == (200, "rejected"), r.text
    status = (await http.get(f"/v1/refunds/{flow_id}", headers=tenant.client)).json()
    assert status["state"] == "rejected"
    assert "mallory" in status["details"]["ignored"]
    assert ("user_wallet", "EUR") not in await balances(http, tenant) or (
        (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "0.00")
    assert (await order(http, tenant, "r-4"))["status"] == "paid"
    # The whole amount can still be refunded: the rejected one gave its capacity back.
    r = await refund(http, tenant, "r-4", "small-1", "40.00")
    assert r.json()["state"] == "refunded"


async def test_signal_from_the_temporal_ui_approves(http, sessions, temporal_env, tenant) -> None:
    from contracts.approvals import ApprovalDecision

    await needs_approval_above(sessions, tenant, "50.00")
    await paid_order(http, sessions, tenant, "r-5")
    r = await refund(http, tenant, "r-5", "ui-1", "55.00")
    flow_id = r.json()["flow_id"]
    handle = temporal_env.client.get_workflow_handle(flow_id)
    await handle.signal("decision", ApprovalDecision(admin="admin-alice", approve=True,
                                                     decision_id="ui-1"))

    async def state() -> str:
        return (await http.get(f"/v1/refunds/{flow_id}", headers=tenant.client)).json()["state"]
    await eventually(state, lambda s: s == "refunded")


async def test_refund_claws_back_available_cashback(http, sessions, tenant) -> None:
    await set_rewards(sessions, tenant, return_window_seconds=0)
    await paid_order(http, sessions, tenant, "r-6")
    r = await http.post("/v1/purchases", json={
        "order_id": "r-6", "user_id": "user-1", "amount": "100.00", "currency": "EUR"},
        headers={**tenant.client, "Idempotency-Key": "purchase-r-6"})
    assert r.status_code == 201

    async def purchase_state() -> str:
        return (await http.get("/v1/purchases/r-6", headers=tenant.client)).json()["state"]
    await eventually(purchase_state, lambda s: s == "available")
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "10.00"
    r = await refund(http, tenant, "r-6", "claw-1", "50.00")
    assert r.json()["state"] == "refunded"
    # +50.00 refunded, −5.00 cashback clawed back (half of 10.00)
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "55.00"


async def test_bad_refunds_write_nothing(http, sessions, tenant) -> None:
    from tests.support import create_tenant

    await paid_order(http, sessions, tenant, "r-7", amount="20.00")
    cases = [
        ("nope", {"amount": "1.00", "currency": "EUR"}, 404, "order_not_found"),
        ("r-7", {"amount": "1.00", "currency": "USD"}, 422, "currency_mismatch"),
        ("r-7", {"amount": "20.01", "currency": "EUR"}, 422, "refund_exceeds_paid"),
        ("r-7", {"amount": "0", "currency": "EUR"}, 422, "invalid_amount"),
        ("r-7", {"amount": "-1.00", "currency": "EUR"}, 422, "invalid_amount"),
        ("r-7", {"amount": "1.001", "currency": "EUR"}, 422, "invalid_amount"),
        ("r-7", {"amount": "1.00", "currency": "EUR", "destination": "moon"}, 422,
         "validation_error"),
    ]
    for order_id, body, status, code in cases:
        r = await http.post(f"/v1/orders/{order_id}/refunds", json=body,
                            headers={**tenant.client, "Idempotency-Key": "bad"})
        assert (r.status_code, r.json()["code"]) == (status, code), (order_id, body, r.text)
    other = await create_tenant(sessions)
    r = await http.post("/v1/orders/r-7/refunds", json={"amount": "1.00", "currency": "EUR"},
                        headers={**other.client, "Idempotency-Key": "bad"})
    assert (r.status_code, r.json()["code"]) == (404, "order_not_found")
    assert await count_rows(sessions, "SELECT count(*) FROM refunds WHERE tenant_id = :t",
                            t=tenant.id) == 0
    assert await count_rows(sessions, "SELECT reserved_refunds FROM orders WHERE tenant_id = :t",
                            t=tenant.id) == 0


async def card_order(http, stripe_ctl, tenant: Tenant, order_id: str,
                     amount: str = "80.00") -> None:
    r = await pay(http, tenant, f"pay-{order_id}", order_id=order_id, amount=amount,
                  currency="EUR", method="card")
    await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}"
                          "/succeed")
    await eventually(lambda: order(http, tenant, order_id), lambda o: o["status"] == "paid")


async def gateway_refund(stripe_ctl, flow_id: str) -> dict:
    async def find() -> list:
        return (await stripe_ctl.get("/_standin/refunds", params={"flow_id": flow_id})
                ).json()["data"]
    [found] = await eventually(find, lambda rs: len(rs) == 1)
    return found


async def test_refund_to_the_card_confirmed_by_webhook(http, stripe_ctl, sessions,
                                                       tenant) -> None:
    await card_order(http, stripe_ctl, tenant, "r-8")
    r = await refund(http, tenant, "r-8", "card-1", "30.00", destination="original")
    assert (r.status_code, r.json()["state"]) == (202, "awaiting_gateway"), r.text
    flow_id = r.json()["flow_id"]
    found = await gateway_refund(stripe_ctl, flow_id)
    assert (found["amount"], found["status"]) == (3000, "pending")
    await stripe_ctl.post(f"/_standin/refunds/{found['id']}/succeed")

    async def state() -> str:
        return (await http.get(f"/v1/refunds/{flow_id}", headers=tenant.client)).json()["state"]
    await eventually(state, lambda s: s == "refunded")
    system = (await http.get("/v1/ledger/accounts", headers=tenant.admin)).json()["data"]
    by = {(a["account"], a["currency"]): a["posted"] for a in system}
    assert by[("merchant_revenue", "EUR")] == "50.00"
    assert by[("gateway_clearing", "EUR")] == "-50.00"
    assert (await order(http, tenant, "r-8"))["status"] == "partially_refunded"


async def test_failed_card_refund_can_go_to_the_wallet_instead(http, stripe_ctl, sessions,
                                                                tenant) -> None:
    await card_order(http, stripe_ctl, tenant, "r-9")
    r = await refund(http, tenant, "r-9", "card-2", "80.00", destination="original")
    flow_id = r.json()["flow_id"]
    found = await gateway_refund(stripe_ctl, flow_id)
    await stripe_ctl.post(f"/_standin/refunds/{found['id']}/fail")

    async def status() -> dict:
        return (await http.get(f"/v1/refunds/{flow_id}", headers=tenant.client)).json()
    failed = await eventually(status, lambda s: s["state"] == "failed")
    assert "expired_or_canceled_card" in failed["error"]
    assert (await order(http, tenant, "r-9"))["status"] == "paid"
    r = await refund(http, tenant, "r-9", "card-2-wallet", "80.00", destination="wallet")
    assert r.json()["state"] == "refunded"
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "80.00"


async def test_card_and_wallet_refunds_together_never_exceed_the_paid_amount(
        http, stripe_ctl, sessions, tenant) -> None:
    await card_order(http, stripe_ctl, tenant, "r-10")  # 80.00 by card
    a, b = await asyncio.gather(
        refund(http, tenant, "r-10", "mix-card", "50.00", destination="original"),
        refund(http, tenant, "r-10", "mix-wallet", "50.00", destination="wallet"))
    codes = sorted([a.status_code, b.status_code])
    assert codes in ([201, 422], [202, 422]), (a.text, b.text)
    o = await order(http, tenant, "r-10")
    assert o["refundable"] == "30.00"
    assert await count_rows(sessions, "SELECT reserved_refunds FROM orders WHERE tenant_id = :t "
                            "AND order_id = 'r-10'", t=tenant.id) == 5000


async def test_the_cli_lists_pending_approvals_and_approves_like_the_api(
        http, sessions, database_url, temporal_address, tenant) -> None:
    """Two identical large refunds: one approved through the API, one through the CLI; both
    flows end in the same state with the same steps and the same money moved."""
    from tests.support import run_cli

    await needs_approval_above(sessions, tenant, "50.00")
    flows = {}
    await fund(sessions, tenant, 20000)
    for via in ("api", "cli"):
        await paid_order(http, sessions, tenant, f"r-{via}", fund_with=0)
        r = await refund(http, tenant, f"r-{via}", f"big-{via}", "60.00")
        assert r.json()["state"] == "awaiting_approval", r.text
        flows[via] = r.json()["flow_id"]
    code, out, err = await run_cli(database_url, temporal_address, "approvals", "list",
                                   "--tenant", tenant.slug)
    assert code == 0, err
    listed = {line.split("\t")[0]: line.split("\t") for line in out.splitlines()}
    assert set(listed) == set(flows.values()), out
    assert all(cols[1] == "refund" for cols in listed.values()), out
    assert "awaiting approval" in err  # progress went to stderr

    r = await http.post(f"/v1/refunds/{flows['api']}/approve", json={}, headers=tenant.admin)
    assert (r.status_code, r.json()["decision"]) == (200, "approved"), r.text
    code, out, err = await run_cli(database_url, temporal_address, "approve", flows["cli"],
                                   "--admin", "mallory")
    assert (code, "not an admin" in err) == (1, True), (out, err)
    code, out, err = await run_cli(database_url, temporal_address, "approve", flows["cli"],
                                   "--admin", "admin-alice")
    assert (code, out.strip()) == (0, "approved"), (out, err)

    async def final(flow_id: str) -> dict:
        return (await http.get(f"/v1/refunds/{flow_id}", headers=tenant.client)).json()
    views = {via: await eventually(lambda f=f: final(f), lambda v: v["state"] == "refunded")
             for via, f in flows.items()}
    steps = {via: [s["name"] for s in v["steps"]] for via, v in views.items()}
    assert steps["api"] == steps["cli"], steps
    assert views["api"]["details"]["approvals"] == views["cli"]["details"]["approvals"]
    refunded = await count_rows(sessions, "SELECT count(*) FROM transfers WHERE tenant_id = :t "
                                "AND kind = 'refund' AND amount = 6000", t=tenant.id)
    assert refunded == 2
    code, out, _ = await run_cli(database_url, temporal_address, "approvals", "list",
                                 "--tenant", tenant.slug)
    assert (code, out) == (0, "")


async def refund_state(http, tenant: Tenant, flow_id: str) -> str:
    return (await http.get(f"/v1/refunds/{flow_id}", headers=tenant.client)).json()["state"]


async def test_a_refund_awaiting_approval_holds_its_capacity(http, stripe_ctl, sessions,
                                                             tenant) -> None:
    """€150 card order, €120 refund awaiting approval: only €30 is left for other refunds,
    and the approved refund is then booked."""
    await needs_approval_above(sessions, tenant, "100.00")
    await card_order(http, stripe_ctl, tenant, "r-hold", amount="150.00")
    r = await refund(http, tenant, "r-hold", "hold-big", "120.00")
    assert (r.status_code, r.json()["state"]) == (202, "awaiting_approval"), r.text
    flow_id = r.json()["flow_id"]
    assert (await order(http, tenant, "r-hold"))["refundable"] == "30.00"
    r = await refund(http, tenant, "r-hold", "hold-20-a", "20.00")
    # €120 held + €20 reach the threshold: the order's refunds add up (approval too)
    assert (r.status_code, r.json()["state"]) == (202, "awaiting_approval"), r.text
    small = r.json()["flow_id"]
    r = await refund(http, tenant, "r-hold", "hold-20-b", "20.00")
    assert (r.status_code, r.json()["code"]) == (422, "refund_exceeds_paid"), r.text
    for flow in (flow_id, small):
        r = await http.post(f"/v1/refunds/{flow}/approve", json={}, headers=tenant.admin)
        assert (r.status_code, r.json()["decision"]) == (200, "approved"), r.text
        await eventually(lambda f=flow: refund_state(http, tenant, f),
                         lambda s: s == "refunded")
    o = await order(http, tenant, "r-hold")
    assert (o["refunded"], o["refundable"], o["status"]) == (
        "140.00", "10.00", "partially_refunded")
    assert await count_rows(sessions, "SELECT sum(amount) FROM transfers WHERE tenant_id = :t "
                            "AND kind = 'refund' AND metadata->>'order_id' = 'r-hold'",
                            t=tenant.id) == 14000
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "140.00"


async def test_a_rejected_refund_gives_its_capacity_back(http, sessions, tenant) -> None:
    await needs_approval_above(sessions, tenant, "100.00")
    await paid_order(http, sessions, tenant, "r-give", amount="150.00", fund_with=15000)
    r = await refund(http, tenant, "r-give", "give-1", "120.00")
    assert r.json()["state"] == "awaiting_approval", r.text
    assert (await order(http, tenant, "r-give"))["refundable"] == "30.00"
    r = await http.post(f"/v1/refunds/{r.json()['flow_id']}/reject", json={"reason": "no"},
                        headers=tenant.admin)
    assert (r.status_code, r.json()["decision"]) == (200, "rejected"), r.text
    assert (await order(http, tenant, "r-give"))["refundable"] == "150.00"
    r = await refund(http, tenant, "r-give", "give-2", "120.00")
    assert (r.status_code, r.json()["state"]) == (202, "awaiting_approval"), r.text
