"""Stripe webhooks in: verified on the raw bytes, stored once, deduplicated; forged, stale and
malformed deliveries never reach a workflow."""

from __future__ import annotations

import asyncio
import json
import time

import stripe

from stripe_standin import sign_payload
from tests.conftest import STRIPE_KEY, WEBHOOK_SECRET
from tests.support import count_rows, flow_status, tenant_transfers, topup, wait_state


async def paid_but_undelivered(http, stripe_ctl, tenant, key: str) -> tuple[str, str]:
    """A paid top-up whose webhook the stand-in recorded but did not deliver."""
    r = await topup(http, tenant, key, amount="12.00", currency="EUR")
    assert r.status_code == 201, r.text
    flow_id, pi = r.json()["flow_id"], r.json()["payment"]["payment_id"]
    await stripe_ctl.post("/_standin/faults", json={
        "operation": "webhook", "mode": "drop", "count": 1, "match": {"flow_id": flow_id}})
    await stripe_ctl.post(f"/_standin/payment_intents/{pi}/succeed")
    events = (await stripe_ctl.get("/_standin/events", params={"payment_intent": pi})).json()
    [event] = [e for e in events["data"] if e["type"] == "payment_intent.succeeded"]
    return flow_id, event["id"]


async def signed(stripe_ctl, event_id: str, **params) -> tuple[bytes, dict[str, str]]:
    d = (await stripe_ctl.get(f"/_standin/events/{event_id}/signed", params=params)).json()
    return d["payload"].encode(), d["headers"]


async def test_fifty_deliveries_ten_at_once_credit_once(http, stripe_ctl, sessions,
                                                        tenant) -> None:
    flow_id, event_id = await paid_but_undelivered(http, stripe_ctl, tenant, "dup-1")
    payload, headers = await signed(stripe_ctl, event_id)
    gate = asyncio.Semaphore(10)

    async def deliver() -> int:
        async with gate:
            return (await http.post("/v1/webhooks/stripe", content=payload,
                                    headers=headers)).status_code

    codes = await asyncio.gather(*(deliver() for _ in range(50)))
    assert set(codes) == {200}
    await wait_state(http, tenant, flow_id, "completed")
    assert await tenant_transfers(sessions, tenant) == 1
    # At least the 50 sent (an HTTP client may itself resend on a dropped keep-alive socket).
    assert await count_rows(sessions, "SELECT deliveries FROM webhook_events WHERE event_id = :e",
                            e=event_id) >= 50
    assert await count_rows(sessions, "SELECT count(*) FROM webhook_events WHERE event_id = :e "
                            "AND signalled_at IS NOT NULL", e=event_id) == 1


async def test_forged_stale_tampered_and_unsigned_never_reach_the_flow(http, stripe_ctl,
                                                                       sessions, tenant) -> None:
    flow_id, event_id = await paid_but_undelivered(http, stripe_ctl, tenant, "forge-1")
    good, headers = await signed(stripe_ctl, event_id)
    forged = await signed(stripe_ctl, event_id, secret="whsec_attacker")
    stale = await signed(stripe_ctl, event_id, timestamp=int(time.time()) - 301)
    tampered = good.replace(b'"amount": 1200', b'"amount": 999900').replace(
        b'"amount":1200', b'"amount":999900')
    assert tampered != good
    attempts = [
        (forged[0], forged[1], "signature_invalid"),
        (stale[0], stale[1], "signature_invalid"),
        (tampered, headers, "signature_invalid"),
        (good, {"Content-Type": "application/json"}, "signature_missing"),
        (good, {**headers, "Stripe-Signature": "t=abc,v1=zz"}, "signature_invalid"),
    ]
    for body, hdrs, code in attempts:
        r = await http.post("/v1/webhooks/stripe", content=body, headers=hdrs)
        assert r.status_code == 400, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == code
    assert await count_rows(sessions, "SELECT count(*) FROM webhook_events WHERE event_id = :e",
                            e=event_id) == 0
    status = await flow_status(http, tenant, flow_id)
    assert status["state"] == "awaiting_payment"
    assert not any(s["name"].startswith("gateway_") for s in status["steps"])
    assert await tenant_transfers(sessions, tenant) == 0

    # The genuine delivery still works afterwards.
    r = await http.post("/v1/webhooks/stripe", content=good, headers=headers)
    assert r.status_code == 200
    await wait_state(http, tenant, flow_id, "completed")


async def test_rotated_secrets_both_verify(http, stripe_ctl, tenant) -> None:
    flow_id, event_id = await paid_but_undelivered(http, stripe_ctl, tenant, "rot-1")
    payload, _ = await signed(stripe_ctl, event_id)
    header = sign_payload(payload.decode(), ["whsec_new_secret_not_configured", WEBHOOK_SECRET])
    r = await http.post("/v1/webhooks/stripe", content=payload,
                        headers={"Stripe-Signature": header, "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    await wait_state(http, tenant, flow_id, "completed")


async def test_signed_but_malformed_event_is_refused(http, sessions) -> None:
    for payload in ("not json", json.dumps({"id": "evt_x"}), json.dumps([1])):
        header = sign_payload(payload, [WEBHOOK_SECRET])
        r = await http.post("/v1/webhooks/stripe", content=payload.encode(),
                            headers={"Stripe-Signature": header})
        assert (r.status_code, r.json()["code"]) == (400, "malformed_payload")
        assert r.headers["content-type"] == "application/problem+json"
    # Recorded under a digest of the body (tests/test_webhook_robustness.py), never its id.
    assert await count_rows(sessions, "SELECT count(*) FROM webhook_events WHERE event_id = "
                            "'evt_x'") == 0


async def test_event_for_an_unknown_flow_is_acknowledged_and_recorded(http, stripe_ctl, standin,
                                                                      sessions) -> None:
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": standin.url},
                                 http_client=stripe.HTTPXClient(), max_network_retries=0)
    pi = await client.v1.payment_intents.create_async(
        {"amount": 500, "currency": "eur", "metadata": {"flow_id": "nobody:topup:ghost"}})
    await stripe_ctl.post("/_standin/faults", json={
        "operation": "webhook", "mode": "drop", "count": 1,
        "match": {"flow_id": "nobody:topup:ghost"}})
    await stripe_ctl.post(f"/_standin/payment_intents/{pi.id}/succeed")
    events = (await stripe_ctl.get("/_standin/events", params={"payment_intent": pi.id})).json()
    event_id = events["data"][-1]["id"]
    payload, headers = await signed(stripe_ctl, event_id)
    r = await http.post("/v1/webhooks/stripe", content=payload, headers=headers)
    assert r.status_code == 200
    assert r.json()["outcome"] == "flow_closed_or_unknown"
    assert await count_rows(sessions, "SELECT count(*) FROM webhook_events WHERE event_id = :e "
                            "AND outcome = 'flow_closed_or_unknown'", e=event_id) == 1
