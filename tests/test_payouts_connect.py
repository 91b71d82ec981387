"""Payouts that reach a payee: Stripe Connect through the stand-in. A user's payout account is
created once with an onboarding link; its status follows the connected account's
``account.updated`` webhooks; an approved withdrawal is a transfer to that account and a
payout on it (``Stripe-Account``), confirmed by the account's payout webhooks; no bank details
travel in Stripe metadata or in the workflow's history."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.gateway import GatewayActivities
from contracts.gateway import (
    PAYMENT_FAILED,
    PAYMENT_SUCCEEDED,
    PayoutRequest,
    PayoutReversalRequest,
)
from contracts.money import Money
from temporal_client import data_converter
from tests.conftest import STRIPE_KEY
from tests.support import Tenant, balances, eventually
from tests.test_codec import all_payloads
from tests.test_orders import fund
from tests.test_withdrawals import onboard, payout_account, payout_of, wait_state, wallet, withdraw
from worker import build_gateways

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


async def stripe_balance(stripe_ctl, account: str | None = None) -> int:
    """The EUR balance Stripe (the stand-in) shows: a connected account's, or the platform's."""
    headers = {"Authorization": f"Bearer {STRIPE_KEY}"}
    if account:
        headers["Stripe-Account"] = account
    r = await stripe_ctl.get("/v1/balance", headers=headers)
    assert r.status_code == 200, r.text
    return sum(b["amount"] for b in r.json()["available"] if b["currency"] == "eur")


async def calls_of(stripe_ctl, flow_id: str, operation: str) -> list[dict]:
    calls = (await stripe_ctl.get("/_standin/calls", params={"flow_id": flow_id})).json()["data"]
    return [c for c in calls if c["operation"] == operation]


async def transfer_of(stripe_ctl, flow_id: str) -> dict:
    [transfer] = (await stripe_ctl.get("/_standin/transfers", params={"flow_id": flow_id})
                  ).json()["data"]
    return transfer


async def test_failed_connect_payout_returns_the_funds(http, stripe_ctl, sessions,
                                                       tenant: Tenant) -> None:
    """The failed payout's money goes back from the payee's account to the platform (one
    reversal of the whole transfer) before the hold is voided: nobody is paid twice."""
    await fund(sessions, tenant, 10000)
    account = await onboard(http, stripe_ctl, tenant)
    platform = await stripe_balance(stripe_ctl)
    flow_id = (await withdraw(http, tenant, "c-2")).json()["flow_id"]
    await approve(http, tenant, flow_id)
    payout = await payout_of(stripe_ctl, flow_id)
    assert await stripe_balance(stripe_ctl) == platform - 3000
    await stripe_ctl.post(f"/_standin/payouts/{payout['id']}/fail")
    s = await wait_state(http, tenant, flow_id, "payout_failed")
    assert "account_closed" in s["error"]
    assert wallet(await balances(http, tenant)) == ("100.00", "0.00", "100.00")
    reversals = [(c["idempotency_key"], c["status_code"], c["replayed"])
                 for c in await calls_of(stripe_ctl, flow_id, "transfers.reversals.create")]
    assert reversals == [(f"{flow_id}:payout:reversal", 200, False)]
    transfer = await transfer_of(stripe_ctl, flow_id)
    assert (transfer["amount_reversed"], transfer["reversed"]) == (3000, True)
    [reversal] = transfer["reversals"]["data"]
    assert reversal["metadata"] == {"flow_id": flow_id, "tenant_id": tenant.id}
    assert await stripe_balance(stripe_ctl, account) == 0
    assert await stripe_balance(stripe_ctl) == platform
    steps = [st["name"] for st in s["steps"]]
    assert steps.count("payout_reversed") == 1 and "payout_reversal_failed" not in steps
    assert (s["details"]["reversal"], s["details"]["reversal_id"]) == ("reversed", reversal["id"])
    assert s["details"]["reversed_amount"] == "30.00"


async def test_a_refused_reversal_is_recorded_and_the_funds_still_return(
        http, stripe_ctl, sessions, tenant: Tenant) -> None:
    """The gateway refuses the reversal: the user is still owed the money (the hold is voided),
    and the flow says the funds stayed with the payee (``payout_reversal_failed``)."""
    await fund(sessions, tenant, 10000)
    account = await onboard(http, stripe_ctl, tenant)
    flow_id = (await withdraw(http, tenant, "c-3")).json()["flow_id"]
    r = await stripe_ctl.post("/_standin/faults", json={
        "operation": "transfers.reversals.create", "mode": "error_400",
        "match": {"flow_id": flow_id}})
    assert r.status_code == 201, r.text
    await approve(http, tenant, flow_id)
    payout = await payout_of(stripe_ctl, flow_id)
    await stripe_ctl.post(f"/_standin/payouts/{payout['id']}/fail")
    s = await wait_state(http, tenant, flow_id, "payout_failed")
    assert wallet(await balances(http, tenant)) == ("100.00", "0.00", "100.00")
    steps = [st["name"] for st in s["steps"]]
    assert steps.count("payout_reversal_failed") == 1 and "payout_reversed" not in steps
    assert s["details"]["reversal"].startswith("failed: stripe refused")
    assert len(await calls_of(stripe_ctl, flow_id, "transfers.reversals.create")) == 1
    assert (await transfer_of(stripe_ctl, flow_id))["amount_reversed"] == 0
    assert await stripe_balance(stripe_ctl, account) == 3000  # left for operations to recover


@pytest.fixture
async def gateway_activities(settings, sessions) -> AsyncIterator[GatewayActivities]:
    gateways = build_gateways(settings)
    yield GatewayActivities(gateways, sessions)
    for gw in gateways.values():
        await gw.close()


async def test_a_retried_reversal_reverses_once(http, stripe_ctl, tenant: Tenant,
                                                gateway_activities) -> None:
    """Through the activity, as a crashed and retried worker would call it: refused while the
    payout still holds the money, then one reversal for any number of calls."""
    run = ActivityEnvironment().run
    account = await onboard(http, stripe_ctl, tenant)
    flow = f"{tenant.slug}:withdrawal:ghost-{secrets.token_hex(4)}"
    payout = await run(gateway_activities.create_payout, PayoutRequest(
        tenant.id, flow, Money(2500, "EUR"), "bank_transfer", account, f"{flow}:payout"))
    req = PayoutReversalRequest(tenant.id, flow, Money(2500, "EUR"), "bank_transfer",
                                f"{flow}:payout:reversal")
    early = await run(gateway_activities.reverse_payout, PayoutReversalRequest(
        tenant.id, flow, Money(2500, "EUR"), "bank_transfer", f"{flow}:early"))  # still paid out
    assert (early.status, early.reversal_id, early.amount) == (
        PAYMENT_FAILED, None, Money(0, "EUR"))
    assert "balance_insufficient" in (early.failure_reason or "")
    await stripe_ctl.post(f"/_standin/payouts/{payout.payout_id}/fail")
    assert await stripe_balance(stripe_ctl, account) == 2500
    # two attempts at once (a retry while the first still runs), then one more: one reversal
    done = list(await asyncio.gather(*(ActivityEnvironment().run(
        gateway_activities.reverse_payout, req) for _ in range(2))))
    done.append(await run(gateway_activities.reverse_payout, req))
    assert {(d.status, d.reversal_id, d.amount.amount) for d in done} == {
        (PAYMENT_SUCCEEDED, done[0].reversal_id, 2500)}
    made = [c for c in await calls_of(stripe_ctl, flow, "transfers.reversals.create")
            if c["status_code"] == 200]
    assert {c["idempotency_key"] for c in made} == {f"{flow}:payout:reversal"}
    assert [c["replayed"] for c in made].count(False) == 1
    transfer = await transfer_of(stripe_ctl, flow)
    assert [r["id"] for r in transfer["reversals"]["data"]] == [done[0].reversal_id]
    assert await stripe_balance(stripe_ctl, account) == 0
