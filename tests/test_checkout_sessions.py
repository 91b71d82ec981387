"""Hosted Stripe Checkout Sessions (gateway ``stripe_checkout``) end to end: HTTP API → Temporal
→ the stand-in's Checkout Sessions (official SDK) → signed ``checkout.session.*`` webhooks →
ledger. Top-ups, points packages and card orders; async payment methods; expiry (the session's
own event, and the flow's expiry when the webhook is lost); refunds of a session-paid order;
duplicate and forged deliveries; the session's PaymentIntent events are ignored."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests import test_reconcile
from tests.support import (
    Tenant,
    balances,
    count_rows,
    eventually,
    tenant_transfers,
    topup,
    wait_state,
)
from tests.test_orders import pay, revenue, wait_status

reconcile = test_reconcile.reconcile  # the `walletflow reconcile` fixture

CHECKOUT = {"gateway": "stripe_checkout"}


async def session_of(ctl: httpx.AsyncClient, flow_id: str) -> dict[str, Any]:
    found = (await ctl.get("/_standin/checkout_sessions", params={"flow_id": flow_id})).json()
    [session] = found["data"]  # one session per flow
    return session


async def events_of(ctl: httpx.AsyncClient, flow_id: str, type_: str) -> list[dict[str, Any]]:
    async def find() -> list[dict[str, Any]]:
        return (await ctl.get("/_standin/events", params={"flow_id": flow_id, "type": type_})
                ).json()["data"]
    return await eventually(find, lambda events: len(events) > 0)


async def outcome_of(sessions, event_id: str) -> str:
    async def read() -> int:
        return await count_rows(sessions, "SELECT count(*) FROM webhook_events WHERE "
                                "event_id = :e AND outcome IS NOT NULL", e=event_id)
    await eventually(read, lambda n: n == 1)
    async with sessions() as s:
        return str((await s.execute(text("SELECT outcome FROM webhook_events WHERE "
                                         "event_id = :e"), {"e": event_id})).scalar_one())


async def session_creates(ctl: httpx.AsyncClient, flow_id: str) -> list[dict[str, Any]]:
    calls = (await ctl.get("/_standin/calls", params={"flow_id": flow_id})).json()["data"]
    return [c for c in calls if c["operation"] in ("checkout.sessions.create",
                                                   "payment_intents.create")]


async def test_checkout_topup_is_paid_on_the_hosted_page(http, stripe_ctl, sessions,
                                                         tenant) -> None:
    r = await topup(http, tenant, "cs-pay-1", amount="25.00", currency="EUR", **CHECKOUT,
                    success_url="https://shop.example/paid/{flow_id}",
                    cancel_url="https://shop.example/cart")
    assert r.status_code == 201, r.text
    body = r.json()
    flow_id, payment = body["flow_id"], body["payment"]
    assert payment["gateway"] == "stripe_checkout" and payment["payment_id"].startswith("cs_")
    assert payment["client_secret"] is None
    assert payment["checkout_url"].endswith(f"/c/pay/{payment['payment_id']}")
    session = await session_of(stripe_ctl, flow_id)
    assert (session["id"], session["status"], session["amount_total"], session["currency"]) == (
        payment["payment_id"], "open", 2500, "eur")
    assert session["success_url"] == f"https://shop.example/paid/{flow_id}"
    assert session["cancel_url"] == "https://shop.example/cart"
    assert (session["metadata"]["flow_id"], session["client_reference_id"]) == (flow_id, flow_id)
    # a 30-minute flow: Stripe's minimum plus slack, the flow expires it itself
    assert 1800 <= session["expires_at"] - session["created"] <= 2400

    page = await stripe_ctl.get(f"/c/pay/{payment['payment_id']}")
    assert page.status_code == 200 and "Pay" in page.text and "25.00 EUR" in page.text
    paid = await stripe_ctl.post(f"/c/pay/{payment['payment_id']}/pay", follow_redirects=False)
    assert (paid.status_code, paid.headers["location"]) == (303, session["success_url"])

    status = await wait_state(http, tenant, flow_id, "completed")
    assert "gateway_succeeded" in [s["name"] for s in status["steps"]]
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "25.00"
    assert await tenant_transfers(sessions, tenant) == 1
    creates = await session_creates(stripe_ctl, flow_id)
    assert [c["operation"] for c in creates if not c["replayed"]] == ["checkout.sessions.create"]
    # The session's PaymentIntent events are acknowledged and ignored, never signalled.
    [pi_event] = await events_of(stripe_ctl, flow_id, "payment_intent.succeeded")
    assert await outcome_of(sessions, pi_event["id"]) == "ignored"
    [completed] = await events_of(stripe_ctl, flow_id, "checkout.session.completed")
    assert await outcome_of(sessions, completed["id"]) == "signalled"


async def test_points_package_through_checkout(http, stripe_ctl, sessions, tenant) -> None:
    r = await topup(http, tenant, "cs-pkg-1", package="premium", **CHECKOUT)
    assert r.status_code == 201, r.text
    cs = r.json()["payment"]["payment_id"]
    done = await stripe_ctl.post(f"/_standin/checkout_sessions/{cs}/complete")
    assert done.status_code == 200, done.text
    await wait_state(http, tenant, r.json()["flow_id"], "completed")
    assert (await balances(http, tenant))[("user_points", "PTS")]["available"] == "550"
    assert await revenue(http, tenant) == {"EUR": "39.99"}


async def test_async_payment_succeeds_later(http, stripe_ctl, sessions, tenant) -> None:
    r = await topup(http, tenant, "cs-async-1", amount="12.00", currency="EUR", **CHECKOUT)
    flow_id, cs = r.json()["flow_id"], r.json()["payment"]["payment_id"]
    done = await stripe_ctl.post(f"/_standin/checkout_sessions/{cs}/complete",
                                 params={"payment": "async"})
    assert done.json()["checkout_session"]["payment_status"] == "unpaid"
    [completed] = await events_of(stripe_ctl, flow_id, "checkout.session.completed")
    assert await outcome_of(sessions, completed["id"]) == "signalled"  # pending: not decisive
    status = await wait_state(http, tenant, flow_id, "awaiting_payment")
    assert await tenant_transfers(sessions, tenant) == 0
    await stripe_ctl.post(f"/_standin/checkout_sessions/{cs}/async_succeed")
    status = await wait_state(http, tenant, flow_id, "completed")
    assert status["state"] == "completed"
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "12.00"


async def test_async_payment_failure_fails_the_flow(http, stripe_ctl, sessions, tenant) -> None:
    r = await topup(http, tenant, "cs-async-2", amount="7.00", currency="EUR", **CHECKOUT)
    flow_id, cs = r.json()["flow_id"], r.json()["payment"]["payment_id"]
    await stripe_ctl.post(f"/_standin/checkout_sessions/{cs}/complete", params={"payment": "async"})
    await stripe_ctl.post(f"/_standin/checkout_sessions/{cs}/async_fail")
    status = await wait_state(http, tenant, flow_id, "failed")
    assert "async_payment_failed" in status["error"]
    assert await balances(http, tenant) == {}
    assert await tenant_transfers(sessions, tenant) == 0


async def test_expired_session_expires_the_flow(http, stripe_ctl, sessions, tenant) -> None:
    r = await topup(http, tenant, "cs-exp-1", amount="9.00", currency="EUR", **CHECKOUT)
    flow_id, cs = r.json()["flow_id"], r.json()["payment"]["payment_id"]
    expired = await stripe_ctl.post(f"/_standin/checkout_sessions/{cs}/expire")
    assert expired.json()["checkout_session"]["status"] == "expired"
    status = await wait_state(http, tenant, flow_id, "expired")
    assert status["error_code"] == "expired"
    assert (await session_of(stripe_ctl, flow_id))["status"] == "expired"
    assert await tenant_transfers(sessions, tenant) == 0
    # Paying an expired session is refused.
    refused = await stripe_ctl.post(f"/_standin/checkout_sessions/{cs}/complete")
    assert refused.status_code == 400


async def test_duplicate_and_forged_webhooks(http, stripe_ctl, sessions, tenant) -> None:
    r = await topup(http, tenant, "cs-dup-1", amount="15.00", currency="EUR", **CHECKOUT)
    flow_id, cs = r.json()["flow_id"], r.json()["payment"]["payment_id"]
    await stripe_ctl.post(f"/_standin/checkout_sessions/{cs}/complete")
    await wait_state(http, tenant, flow_id, "completed")
    [completed] = await events_of(stripe_ctl, flow_id, "checkout.session.completed")
    again = await stripe_ctl.post(f"/_standin/events/{completed['id']}/deliver")
    assert again.status_code == 200, again.text
    signed = (await stripe_ctl.get(f"/_standin/events/{completed['id']}/signed")).json()
    replay = await http.post("/v1/webhooks/stripe", content=signed["payload"].encode(),
                             headers=signed["headers"])
    assert replay.json() == {"received": True, "duplicate": True}
    forged = (await stripe_ctl.get(f"/_standin/events/{completed['id']}/signed",
                                   params={"secret": "whsec_forged"})).json()
    bad = await http.post("/v1/webhooks/stripe", content=forged["payload"].encode(),
                          headers=forged["headers"])
    assert (bad.status_code, bad.json()["code"]) == (400, "signature_invalid")
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "15.00"
    assert await tenant_transfers(sessions, tenant) == 1


async def test_card_order_through_checkout_and_its_refund(http, stripe_ctl, sessions,
                                                         tenant: Tenant) -> None:
    r = await pay(http, tenant, "cs-order-1", order_id="cs-9001", amount="40.00",
                  currency="EUR", method="card", **CHECKOUT)
    assert (r.status_code, r.json()["state"]) == (201, "awaiting_payment"), r.text
    cs = r.json()["payment"]["payment_id"]
    assert cs.startswith("cs_") and r.json()["payment"]["checkout_url"].endswith(cs)
    await stripe_ctl.post(f"/_standin/checkout_sessions/{cs}/complete")
    await wait_status(http, tenant, "cs-9001", "paid")
    assert await revenue(http, tenant) == {"EUR": "40.00"}

    refund = await http.post("/v1/orders/cs-9001/refunds", json={
        "amount": "10.00", "currency": "EUR", "destination": "original"},
        headers={**tenant.client, "Idempotency-Key": "cs-refund-1"})
    assert (refund.status_code, refund.json()["state"]) == (202, "awaiting_gateway"), refund.text
    session = await session_of(stripe_ctl, r.json()["flow_id"])

    async def gateway_refunds() -> list[dict[str, Any]]:
        return (await stripe_ctl.get("/_standin/refunds", params={
            "payment_intent": session["payment_intent"]})).json()["data"]
    [found] = await eventually(gateway_refunds, lambda rs: len(rs) == 1)
    assert (found["amount"], found["status"]) == (1000, "pending")
    await stripe_ctl.post(f"/_standin/refunds/{found['id']}/succeed")

    async def state() -> str:
        flow = refund.json()["flow_id"]
        return (await http.get(f"/v1/refunds/{flow}", headers=tenant.client)).json()["state"]
    await eventually(state, lambda s: s == "refunded")
    assert await revenue(http, tenant) == {"EUR": "30.00"}


@pytest.fixture(scope="module")
async def expiring_api(start_api, worker):
    return await start_api(topup_expiry_seconds=2)


async def test_unpaid_session_is_expired_by_the_flow(expiring_api, stripe_ctl, sessions,
                                                     tenant) -> None:
    async with httpx.AsyncClient(base_url=expiring_api.url, timeout=30) as api:
        r = await topup(api, tenant, "cs-short-1", amount="5.00", currency="EUR", **CHECKOUT)
        assert r.status_code == 201, r.text
        status = await wait_state(api, tenant, r.json()["flow_id"], "expired")
    assert "payment_canceled" in [s["name"] for s in status["steps"]]
    session = await session_of(stripe_ctl, r.json()["flow_id"])
    assert session["status"] == "expired"  # the flow expired it at its own expiry
    assert session["expires_at"] >= session["created"] + 1800  # Stripe's minimum
    assert session["expires_at"] > time.time()
    assert await tenant_transfers(sessions, tenant) == 0


async def test_missed_webhook_is_rescued_at_the_expiry(expiring_api, http, stripe_ctl,
                                                       sessions, tenant) -> None:
    async with httpx.AsyncClient(base_url=expiring_api.url, timeout=30) as api:
        r = await topup(api, tenant, "cs-lost-1", amount="8.00", currency="EUR", **CHECKOUT)
        flow_id, cs = r.json()["flow_id"], r.json()["payment"]["payment_id"]
        await stripe_ctl.post("/_standin/faults", json={
            "operation": "webhook", "mode": "drop", "count": 2, "match": {"flow_id": flow_id}})
        await stripe_ctl.post(f"/_standin/checkout_sessions/{cs}/complete")
        status = await wait_state(api, tenant, flow_id, "completed")
    assert "payment_found_by_status_poll" in [s["name"] for s in status["steps"]]
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "8.00"
    assert await tenant_transfers(sessions, tenant) == 1


async def test_the_standin_expires_a_session_at_its_expires_at(http, standin, stripe_ctl,
                                                               sessions, tenant) -> None:
    r = await topup(http, tenant, "cs-sweep-1", amount="4.00", currency="EUR", **CHECKOUT)
    flow_id, cs = r.json()["flow_id"], r.json()["payment"]["payment_id"]
    # As if its expires_at had come: the stand-in's sweep expires it and says so.
    standin.server.config.app.state.standin.store.checkout_sessions[cs]["expires_at"] = (
        int(time.time()) - 1)
    [expired] = await events_of(stripe_ctl, flow_id, "checkout.session.expired")
    assert expired["data"]["object"]["status"] == "expired"
    await wait_state(http, tenant, flow_id, "expired")
    assert await tenant_transfers(sessions, tenant) == 0


async def test_the_tenant_chooses_checkout_and_its_return_urls(http, stripe_ctl,
                                                               tenant) -> None:
    r = await http.put("/v1/settings/payments", headers=tenant.admin, json={
        "gateway": "stripe_checkout", "checkout_success_url": "https://t.example/ok/{flow_id}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"gateway": "stripe_checkout",
                        "checkout_success_url": "https://t.example/ok/{flow_id}",
                        "checkout_cancel_url": None}
    bad = await http.put("/v1/settings/payments", headers=tenant.admin,
                         json={"checkout_cancel_url": "javascript:alert(1)"})
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
    t = await topup(http, tenant, "cs-tenant-1", amount="3.00", currency="EUR")
    assert t.status_code == 201, t.text
    assert t.json()["payment"]["payment_id"].startswith("cs_")
    session = await session_of(stripe_ctl, t.json()["flow_id"])
    assert session["success_url"] == f"https://t.example/ok/{t.json()['flow_id']}"
    assert session["cancel_url"] == session["success_url"]  # no cancel URL: the success URL
    # The request's own URL wins over the tenant's.
    own = await topup(http, tenant, "cs-tenant-2", amount="3.00", currency="EUR",
                      cancel_url="http://localhost:3000/cart")
    session = await session_of(stripe_ctl, own.json()["flow_id"])
    assert session["cancel_url"] == "http://localhost:3000/cart"


async def test_minimal_params_send_only_what_a_payment_needs(standin, stripe_ctl) -> None:
    """STRIPE_MINIMAL_PARAMS (for emulators such as localstripe, which refuse them): no
    description, no automatic_payment_methods."""
    from activities.gateways.stripe_gateway import StripeGateway
    from contracts.gateway import CreatePaymentRequest
    from contracts.money import Money

    flow = f"minimal-{time.time_ns()}"
    for minimal in (False, True):
        gateway = StripeGateway("sk_test_walletflow_standin", standin.url, None, 5.0, minimal)
        try:
            await gateway.create_payment(CreatePaymentRequest(
                "t", f"{flow}-{minimal}", Money(500, "EUR"), "a description",
                f"{flow}-{minimal}:create-payment"))
        finally:
            await gateway.close()
        [pi] = (await stripe_ctl.get("/_standin/payment_intents",
                                     params={"flow_id": f"{flow}-{minimal}"})).json()["data"]
        sent = (pi["description"], pi["automatic_payment_methods"] is not None)
        assert sent == ((None, False) if minimal else ("a description", True))


async def test_reconcile_lists_the_session_not_its_payment_intent(http, stripe_ctl, tenant,
                                                                  reconcile) -> None:
    r = await topup(http, tenant, "cs-rec-1", amount="6.00", currency="EUR", **CHECKOUT)
    await stripe_ctl.post(f"/_standin/checkout_sessions/{r.json()['payment']['payment_id']}"
                          "/complete")
    await wait_state(http, tenant, r.json()["flow_id"], "completed")
    code, out, err = await reconcile("--tenant", tenant.slug, "--since", "1h")
    assert (code, out) == (0, ""), err
    assert "1 checked, 0 drifting" in err


async def test_a_failed_create_is_retried_into_one_session(http, stripe_ctl, tenant) -> None:
    """A 500 on the create is retried with the same idempotency key and the same parameters
    (the session's expiry is computed from the flow's, not from the clock): one session."""
    flow_id = f"{tenant.slug}:topup:cs-retry-1"
    await stripe_ctl.post("/_standin/faults", json={
        "operation": "checkout.sessions.create", "mode": "error_500", "count": 1,
        "match": {"flow_id": flow_id}})
    r = await topup(http, tenant, "cs-retry-1", amount="11.00", currency="EUR", **CHECKOUT)
    assert r.status_code == 201, r.text
    creates = await session_creates(stripe_ctl, flow_id)
    assert [(c["fault"], c["status_code"]) for c in creates] == [("error_500", 500),
                                                                 (None, 200)]
    assert (await session_of(stripe_ctl, flow_id))["id"] == r.json()["payment"]["payment_id"]
