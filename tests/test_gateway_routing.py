"""Gateway webhooks are routed by the object they name: each payment, refund and payout a flow
creates is recorded with its flow and amount, once; a webhook reaches the flow that created its
object, whatever its metadata says, and one naming another flow or amount than the stored
object's is answered ``ignored_mismatch`` and never signalled."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.gateway import GatewayActivities
from contracts.gateway import CreatePaymentRequest, CreateRefundRequest, PayoutRequest
from contracts.money import Money
from stripe_standin import sign_payload
from tests.conftest import WEBHOOK_SECRET
from tests.support import (
    balances,
    count_rows,
    flow_status,
    tenant_transfers,
    topup,
    wait_state,
)
from tests.test_webhooks import paid_but_undelivered, signed
from tests.test_withdrawals import onboard
from worker import build_gateways


async def event_of(stripe_ctl: Any, event_id: str) -> dict[str, Any]:
    payload, _ = await signed(stripe_ctl, event_id)
    event: dict[str, Any] = json.loads(payload)
    return event


async def deliver(http: Any, event: dict[str, Any]) -> Any:
    """``event`` as Stripe would send it, signed with the session's webhook secret."""
    payload = json.dumps(event)
    return await http.post("/v1/webhooks/stripe", content=payload.encode(), headers={
        "Stripe-Signature": sign_payload(payload, [WEBHOOK_SECRET]),
        "Content-Type": "application/json"})


def forged_copy(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The event under a fresh id with ``changes`` to its object (None deletes a field)."""
    copy = json.loads(json.dumps(event))
    copy["id"] = f"evt_copy_{secrets.token_hex(6)}"
    obj = copy["data"]["object"]
    for name, value in changes.items():
        if value is None:
            obj.pop(name, None)
        else:
            obj[name] = value
    return copy


async def outcome_row(sessions: Any, event_id: str) -> tuple[str, str | None]:
    from sqlalchemy import text

    async with sessions() as session:
        row = (await session.execute(text(
            "SELECT outcome, detail FROM webhook_events WHERE source = 'stripe' "
            "AND event_id = :e AND signalled_at IS NULL"), {"e": event_id})).one()
    return row.outcome, row.detail


def untouched(status: dict[str, Any]) -> bool:
    """The flow never heard of a webhook: no decision, nothing ignored."""
    return (status["state"] == "awaiting_payment"
            and not any(s["name"].startswith("gateway_") for s in status["steps"])
            and "ignored_events" not in json.dumps(status))


async def test_a_payment_without_metadata_is_credited_at_once(http, stripe_ctl, sessions,
                                                              tenant) -> None:
    # The API's top-ups expire after 30 minutes: only routing by the object id can credit it
    # within the wait below.
    flow_id, event_id = await paid_but_undelivered(http, stripe_ctl, tenant, "route-1")
    bare = forged_copy(await event_of(stripe_ctl, event_id), metadata=None)
    assert "metadata" not in bare["data"]["object"]
    r = await deliver(http, bare)
    assert (r.status_code, r.json()["outcome"]) == (200, "signalled"), r.text
    status = await wait_state(http, tenant, flow_id, "completed", within=20)
    assert "payment_found_by_status_poll" not in [s["name"] for s in status["steps"]]
    wallet = (await balances(http, tenant))[("user_wallet", "EUR")]
    assert wallet["posted"] == "12.00"
    assert await tenant_transfers(sessions, tenant) == 1


async def test_another_flows_metadata_is_ignored_mismatch(http, stripe_ctl, sessions,
                                                          tenant) -> None:
    flow_id, event_id = await paid_but_undelivered(http, stripe_ctl, tenant, "route-2")
    r = await topup(http, tenant, "route-2-other", amount="12.00", currency="EUR")
    other = r.json()["flow_id"]
    event = await event_of(stripe_ctl, event_id)
    claimed = forged_copy(event, metadata={"flow_id": other, "tenant_id": tenant.id})
    r = await deliver(http, claimed)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "ignored_mismatch", r.text
    outcome, detail = await outcome_row(sessions, claimed["id"])
    assert outcome == "ignored_mismatch" and "another flow" in (detail or "")
    assert untouched(await flow_status(http, tenant, flow_id))
    assert untouched(await flow_status(http, tenant, other))

    # The genuine event still credits the flow that created the payment, once.
    r = await deliver(http, event)
    assert (r.status_code, r.json()["outcome"]) == (200, "signalled"), r.text
    await wait_state(http, tenant, flow_id, "completed")
    assert await tenant_transfers(sessions, tenant) == 1
    assert untouched(await flow_status(http, tenant, other))


@pytest.mark.parametrize("changes", [{"amount": 999900}, {"currency": "usd"},
                                     {"amount": 1, "currency": "jpy"}])
async def test_another_amount_is_ignored_mismatch_and_credits_nothing(
        http, stripe_ctl, sessions, tenant, changes: dict[str, Any]) -> None:
    flow_id, event_id = await paid_but_undelivered(http, stripe_ctl, tenant, "route-3")
    event = await event_of(stripe_ctl, event_id)
    wrong = forged_copy(event, **changes)
    r = await deliver(http, wrong)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "ignored_mismatch", r.text
    assert "12.00 EUR" in r.json()["detail"]
    assert (await outcome_row(sessions, wrong["id"]))[0] == "ignored_mismatch"
    assert untouched(await flow_status(http, tenant, flow_id))
    assert await balances(http, tenant) == {}
    assert await tenant_transfers(sessions, tenant) == 0

    r = await deliver(http, event)
    assert r.json()["outcome"] == "signalled", r.text
    await wait_state(http, tenant, flow_id, "completed")
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["posted"] == "12.00"


# -- the recording, through the activities themselves ------------------------------------------


@pytest.fixture
async def gateway_activities(settings, sessions) -> AsyncIterator[GatewayActivities]:
    gateways = build_gateways(settings)
    yield GatewayActivities(gateways, sessions)
    for gw in gateways.values():
        await gw.close()


async def stored(sessions: Any, flow_id: str) -> list[tuple[str, str, int, str]]:
    from sqlalchemy import text

    async with sessions() as session:
        rows = (await session.execute(text(
            "SELECT kind, object_id, amount, currency FROM gateway_objects WHERE flow_id = :f "
            "ORDER BY kind"), {"f": flow_id})).all()
    return [tuple(r) for r in rows]


async def test_each_created_object_is_recorded_once_and_routes_its_events(
        http, stripe_ctl, sessions, tenant, gateway_activities: GatewayActivities) -> None:
    """Created twice (a retried activity: same idempotency key), recorded once; refund and
    payout webhooks without metadata reach the flow that created them (here flows that do not
    run, so the answer is ``flow_closed_or_unknown``, not ``ignored``)."""
    run = ActivityEnvironment().run
    flow = f"{tenant.slug}:refund:ghost-{secrets.token_hex(4)}"
    pay = CreatePaymentRequest(tenant.id, flow, Money(700, "EUR"), "routing test",
                               f"{flow}:create-payment")
    payments = [await run(gateway_activities.create_payment, pay) for _ in range(2)]
    assert payments[0].payment_id == payments[1].payment_id
    await stripe_ctl.post(f"/_standin/payment_intents/{payments[0].payment_id}/succeed")
    refund_req = CreateRefundRequest(tenant.id, flow, payments[0].payment_id, Money(300, "EUR"),
                                     f"{flow}:refund")
    refund = [await run(gateway_activities.create_refund, refund_req) for _ in range(2)][0]
    account = await onboard(http, stripe_ctl, tenant)  # a payout goes to the payee's account
    payout_req = PayoutRequest(tenant.id, flow, Money(250, "EUR"), "bank_transfer", account,
                               f"{flow}:payout")
    payout = [await run(gateway_activities.create_payout, payout_req) for _ in range(2)][0]
    assert await stored(sessions, flow) == [
        ("payment", payments[0].payment_id, 700, "EUR"),
        ("payout", payout.payout_id, 250, "EUR"),
        ("refund", refund.refund_id, 300, "EUR")]

    template = {"object": "event", "api_version": "2024-06-20", "livemode": False}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("refund.updated", {"id": refund.refund_id, "object": "refund", "amount": 300,
                            "currency": "eur", "status": "succeeded"}),
        ("payout.paid", {"id": payout.payout_id, "object": "payout", "amount": 250,
                         "currency": "eur", "status": "paid"}),
    ]
    for event_type, obj in cases:
        event = {**template, "id": f"evt_{secrets.token_hex(8)}", "type": event_type,
                 "data": {"object": obj}}
        r = await deliver(http, event)
        assert (r.status_code, r.json()["outcome"]) == (200, "flow_closed_or_unknown"), r.text
        assert await count_rows(sessions, "SELECT count(*) FROM webhook_events WHERE "
                                "event_id = :e AND flow_id = :f", e=event["id"], f=flow) == 1
        r = await deliver(http, forged_copy(event, amount=obj["amount"] + 1))
        assert r.json()["outcome"] == "ignored_mismatch", r.text
