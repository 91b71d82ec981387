"""Top-up end to end: HTTP API → Temporal → Stripe stand-in (official SDK) → signed webhook →
ledger in PostgreSQL."""

from __future__ import annotations

import asyncio

from tests.support import (
    balances,
    count_rows,
    create_tenant,
    flow_status,
    tenant_transfers,
    topup,
    wait_state,
)


async def test_paid_topup_credits_the_wallet_once(http, stripe_ctl, sessions, tenant) -> None:
    r = await topup(http, tenant, "pay-1", amount="25.00", currency="EUR")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["state"] == "awaiting_payment"
    assert body["flow_id"] == f"{tenant.slug}:topup:pay-1"
    payment = body["payment"]
    assert payment["client_secret"].startswith(payment["payment_id"] + "_secret_")
    assert payment["checkout_url"].endswith(f"/checkout/{payment['payment_id']}")

    paid = await stripe_ctl.post(f"/_standin/payment_intents/{payment['payment_id']}/succeed")
    assert paid.status_code == 200, paid.text
    status = await wait_state(http, tenant, body["flow_id"], "completed")
    assert [s["name"] for s in status["steps"]][-2:] == ["wallet_credited", "completed"]
    assert status["amounts"]["credit"] == "25.00"

    wallet = (await balances(http, tenant))[("user_wallet", "EUR")]
    assert (wallet["posted"], wallet["available"], wallet["pending_in"]) == ("25.00", "25.00",
                                                                             "0.00")
    assert await tenant_transfers(sessions, tenant) == 1
    history = (await http.get(f"/v1/wallets/{tenant.user_id}/transactions",
                              headers=tenant.client)).json()["data"]
    assert [(h["direction"], h["amount"], h["balance_after"], h["counterparty"])
            for h in history] == [("credit", "25.00", "25.00", "gateway_clearing")]

    # Paying the same top-up request again replays the first answer, moves nothing new.
    again = await topup(http, tenant, "pay-1", amount="25.00", currency="EUR")
    assert again.status_code == 201 and again.json() == body
    assert again.headers["idempotent-replayed"] == "true"
    assert await tenant_transfers(sessions, tenant) == 1


async def test_declined_payment_moves_nothing(http, stripe_ctl, sessions, tenant) -> None:
    r = await topup(http, tenant, "decline-1", amount="10.00", currency="EUR")
    assert r.status_code == 201, r.text
    pi = r.json()["payment"]["payment_id"]
    await stripe_ctl.post(f"/_standin/payment_intents/{pi}/fail")
    status = await wait_state(http, tenant, r.json()["flow_id"], "failed")
    assert "card_declined" in status["error"]
    intents = (await stripe_ctl.get("/_standin/payment_intents",
                                    params={"flow_id": r.json()["flow_id"]})).json()["data"]
    assert [i["status"] for i in intents] == ["canceled"]  # can no longer be paid
    assert await balances(http, tenant) == {}
    assert await tenant_transfers(sessions, tenant) == 0


async def test_points_package_credits_points_and_books_revenue(http, stripe_ctl, sessions,
                                                                tenant) -> None:
    r = await topup(http, tenant, "pkg-1", package="premium")
    assert r.status_code == 201, r.text
    assert (r.json()["amount"], r.json()["currency"], r.json()["credit"]) == (
        "39.99", "EUR", {"amount": "550", "currency": "PTS"})
    await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}/succeed")
    await wait_state(http, tenant, r.json()["flow_id"], "completed")
    assert (await balances(http, tenant))[("user_points", "PTS")]["available"] == "550"
    system = (await http.get("/v1/ledger/accounts", headers=tenant.admin)).json()["data"]
    by_kind = {(a["account"], a["currency"]): a["posted"] for a in system}
    assert by_kind[("merchant_revenue", "EUR")] == "39.99"
    assert by_kind[("gateway_clearing", "EUR")] == "-39.99"
    assert by_kind[("points_issuance", "PTS")] == "-550"
    assert await tenant_transfers(sessions, tenant) == 2


async def test_twenty_concurrent_requests_with_one_key_start_one_flow(http, stripe_ctl,
                                                                      tenant) -> None:
    responses = await asyncio.gather(*(
        topup(http, tenant, "same-key", amount="7.50", currency="EUR") for _ in range(20)))
    # The first answers 201; a duplicate answers 409 idempotency_in_progress while it is in
    # flight, its stored 201 after (tests/test_idempotency.py).
    assert {r.status_code for r in responses} <= {201, 409}
    answered = [r for r in responses if r.status_code == 201]
    assert len({r.json()["flow_id"] for r in answered}) == 1
    assert len({r.json()["payment"]["payment_id"] for r in answered}) == 1
    intents = (await stripe_ctl.get("/_standin/payment_intents",
                                    params={"flow_id": responses[0].json()["flow_id"]})).json()
    assert len(intents["data"]) == 1

    different = await topup(http, tenant, "same-key", amount="7.51", currency="EUR")
    assert different.status_code == 422
    assert different.headers["content-type"] == "application/problem+json"
    assert different.json()["code"] == "idempotency_key_reused"


async def test_flows_are_listed_and_isolated_per_tenant(http, sessions, tenant) -> None:
    r = await topup(http, tenant, "iso-1", amount="1.00", currency="EUR")
    flow_id = r.json()["flow_id"]
    assert (await flow_status(http, tenant, flow_id))["state"] == "awaiting_payment"
    listed = (await http.get("/v1/flows", headers=tenant.client)).json()["data"]
    assert [f["flow_id"] for f in listed] == [flow_id]

    other = await create_tenant(sessions)
    assert (await http.get(f"/v1/flows/{flow_id}", headers=other.client)).status_code == 404
    assert (await http.get("/v1/flows", headers=other.client)).json()["data"] == []
    # The other tenant's "user-1" is a different wallet.
    assert await balances(http, other) == {}


async def test_history_is_cursor_paginated(http, stripe_ctl, sessions, tenant) -> None:
    for i in range(3):
        r = await topup(http, tenant, f"page-{i}", amount=f"{i + 1}.00", currency="EUR")
        await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}"
                              "/succeed")
        await wait_state(http, tenant, r.json()["flow_id"], "completed")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await http.get(f"/v1/wallets/{tenant.user_id}/transactions", params=params,
                               headers=tenant.client)).json()
        seen += [(t["amount"], t["balance_after"]) for t in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 2
    assert seen == [("3.00", "6.00"), ("2.00", "3.00"), ("1.00", "1.00")]
    assert await count_rows(sessions, "SELECT count(*) FROM flows WHERE tenant_id = :t",
                            t=tenant.id) == 3


async def test_completed_history_replays_deterministically(http, stripe_ctl, temporal_env,
                                                           tenant) -> None:
    """The workflow code replays its own recorded history (temporalio `Replayer`)."""
    from temporalio.worker import Replayer

    from worker import WORKFLOWS

    r = await topup(http, tenant, "replay-1", amount="3.00", currency="EUR")
    await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}/succeed")
    await wait_state(http, tenant, r.json()["flow_id"], "completed")
    history = await temporal_env.client.get_workflow_handle(r.json()["flow_id"]).fetch_history()
    result = await Replayer(workflows=WORKFLOWS, data_converter=temporal_env.client.data_converter
                            ).replay_workflow(history)
    assert result.replay_failure is None
