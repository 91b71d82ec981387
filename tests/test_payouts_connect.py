"""Payouts that reach a payee: Stripe Connect through the stand-in. A user's payout account is
created once with an onboarding link; its status follows the connected account's
``account.updated`` webhooks; an approved withdrawal is a transfer to that account and a
payout on it (``Stripe-Account``), confirmed by the account's payout webhooks; no bank details
travel in Stripe metadata or in the workflow's history."""

from __future__ import annotations

from temporalio.client import Client

from temporal_client import data_converter
from tests.support import Tenant, balances, eventually
from tests.test_codec import all_payloads
from tests.test_orders import fund
from tests.test_withdrawals import onboard, payout_account, payout_of, wait_state, wallet, withdraw

URLS = {"return_url": "https://app.example/done", "refresh_url": "https://app.example/again"}


async def approve(http, tenant: Tenant, flow_id: str) -> None:
    r = await http.post(f"/v1/withdrawals/{flow_id}/approve", json={}, headers=tenant.admin)
    assert r.status_code == 200, r.text


async def test_onboarding_link_and_status_through_the_account_webhooks(
        http, stripe_ctl, tenant: Tenant) -> None:
    await http.post("/v1/users", json={"user_id": "payee-1"}, headers=tenant.client)
    missing = await http.get("/v1/users/payee-1/payout-account", headers=tenant.client)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    first = await http.post("/v1/users/payee-1/payout-account", json=URLS, headers=tenant.client)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["account_id"].startswith("acct_") and "/connect/onboarding/" in \
        body["onboarding_url"]
    assert (body["payouts_enabled"], body["provider"]) == (False, "stripe_connect")
    again = await http.post("/v1/users/payee-1/payout-account", json=URLS, headers=tenant.client)
    assert (again.status_code, again.json()["account_id"]) == (200, body["account_id"])
    accounts = (await stripe_ctl.get("/_standin/accounts")).json()["data"]
    assert [a["id"] for a in accounts].count(body["account_id"]) == 1
    assert await onboard(http, stripe_ctl, tenant, "payee-1") == body["account_id"]
    assert (await payout_account(http, tenant, "payee-1"))["requirements_due"] == []
    r = await stripe_ctl.post(f"/_standin/accounts/{body['account_id']}/restrict")
    assert r.json()["event"]["account"] == body["account_id"]  # a Connect event
    status = await eventually(lambda: payout_account(http, tenant, "payee-1"),
                              lambda a: a["payouts_enabled"] is False, within=30)
    assert status["requirements_due"] == ["individual.verification.document"]
    unknown = await http.post("/v1/users/nobody/payout-account", json=URLS,
                              headers=tenant.client)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "user_not_found")


async def test_a_withdrawal_needs_an_enabled_payout_account(http, stripe_ctl, sessions,
                                                            tenant: Tenant) -> None:
    await fund(sessions, tenant, 10000)
    r = await withdraw(http, tenant, "c-none")
    assert (r.status_code, r.json()["code"]) == (422, "account_missing"), r.text
    assert "payout-account" in r.json()["detail"]
    await http.post("/v1/users", json={"user_id": "user-1"}, headers=tenant.client)
    await http.post("/v1/users/user-1/payout-account", json=URLS, headers=tenant.client)
    r = await withdraw(http, tenant, "c-pending")
    assert (r.status_code, r.json()["code"]) == (422, "account_missing"), r.text
    for method in ("mobile_money", "paypal", "crypto"):
        r = await withdraw(http, tenant, f"c-{method}", method=method, destination="x")
        assert (r.status_code, r.json()["code"]) == (422, "gateway_refused"), r.text
        assert f"no payout provider is configured for method '{method}'" in r.json()["detail"]
    assert wallet(await balances(http, tenant)) == ("100.00", "0.00", "100.00")


async def test_payout_is_a_transfer_then_a_payout_on_the_connected_account(
        http, stripe_ctl, sessions, settings, temporal_address, tenant: Tenant) -> None:
    await fund(sessions, tenant, 10000)
    account = await onboard(http, stripe_ctl, tenant)
    r = await withdraw(http, tenant, "c-1", destination=account)  # naming it is accepted
    assert r.status_code == 202, r.text
    flow_id = r.json()["flow_id"]
    await approve(http, tenant, flow_id)
    payout = await payout_of(stripe_ctl, flow_id)
    calls = (await stripe_ctl.get("/_standin/calls", params={"flow_id": flow_id})).json()["data"]
    made = [(c["operation"], c["idempotency_key"], c["stripe_account"]) for c in calls
            if c["operation"].endswith(".create") and not c["replayed"]]
    assert made == [("transfers.create", f"{flow_id}:payout:transfer", None),
                    ("payouts.create", f"{flow_id}:payout:payout", account)]
    assert payout["metadata"] == {"flow_id": flow_id, "tenant_id": tenant.id}
    assert payout["destination"].startswith("ba_")  # the account's own bank, held by Stripe
    paid = await stripe_ctl.post(f"/_standin/payouts/{payout['id']}/paid")
    assert {e["account"] for e in paid.json()["events"]} == {account}
    s = await wait_state(http, tenant, flow_id, "paid")
    assert (s["details"]["destination"], s["details"]["payout_id"]) == (account, payout["id"])
    assert wallet(await balances(http, tenant)) == ("70.00", "0.00", "70.00")
    # the history names the payee by its account id only, even decoded
    history = await (await Client.connect(temporal_address)).get_workflow_handle(
        flow_id).fetch_history()
    codec = data_converter(settings).payload_codec
    assert codec is not None
    text = b"".join(p.data for p in await codec.decode(all_payloads(history)))
    assert account.encode() in text and b"DE89" not in text and b"iban" not in text.lower()


async def test_failed_connect_payout_returns_the_funds(http, stripe_ctl, sessions,
                                                       tenant: Tenant) -> None:
    await fund(sessions, tenant, 10000)
    await onboard(http, stripe_ctl, tenant)
    flow_id = (await withdraw(http, tenant, "c-2")).json()["flow_id"]
    await approve(http, tenant, flow_id)
    payout = await payout_of(stripe_ctl, flow_id)
    await stripe_ctl.post(f"/_standin/payouts/{payout['id']}/fail")
    s = await wait_state(http, tenant, flow_id, "payout_failed")
    assert "account_closed" in s["error"]
    assert wallet(await balances(http, tenant)) == ("100.00", "0.00", "100.00")
