"""Outcomes that must reach the client: a flow's typed refusal (never the "no code" fallback),
an admin's decision (idempotent, retryable after a timeout, kept when it comes early), and a
202 that logs nothing."""

from __future__ import annotations

import asyncio
import gc
import logging
from datetime import timedelta

import api.decisions
import api.flows
import api.flowstart
import api.refunds
from contracts.approvals import ApprovalDecision
from contracts.flow import FlowStatus
from contracts.money import Money
from contracts.withdrawal import WithdrawalInput
from db.withdrawals import WithdrawalQueries
from tests.conftest import TASK_QUEUE
from tests.support import balances, eventually
from tests.test_orders import fund
from tests.test_refunds import needs_approval_above, paid_order, refund
from workflows.withdrawal import WithdrawalWorkflow


async def _status(http, tenant, flow_id: str) -> dict:
    return (await http.get(f"/v1/refunds/{flow_id}", headers=tenant.client)).json()


async def test_a_refund_refused_at_reserve_time_answers_its_code(http, sessions, tenant,
                                                                 monkeypatch) -> None:
    """The race the soak found: the API's check passes on what it read, a concurrent refund
    took the capacity, `refunds.reserve` refuses. The answer is the flow's 422, also when the
    status query cannot answer in time (the typed refusal is read from the flow's history)."""
    await paid_order(http, sessions, tenant, "o-race")
    assert (await refund(http, tenant, "o-race", "first", "60.00")).status_code == 201
    monkeypatch.setattr(api.refunds, "_refundable", lambda order, amount: None)  # stale read
    r = await refund(http, tenant, "o-race", "second", "60.00")
    assert (r.status_code, r.json()["code"]) == (422, "refund_exceeds_paid"), r.text
    assert "at most 40.00 EUR" in r.json()["detail"]
    monkeypatch.setattr(api.flows, "REFUSAL_PATIENCE", timedelta(milliseconds=1))
    r = await refund(http, tenant, "o-race", "third", "50.00")
    assert (r.status_code, r.json()["code"]) == (422, "refund_exceeds_paid"), r.text
    again = await refund(http, tenant, "o-race", "third", "50.00")  # stored: replayed
    assert (again.status_code, again.json()) == (422, r.json())
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "60.00"


async def _awaiting_refund(http, sessions, tenant, order_id: str) -> str:
    await needs_approval_above(sessions, tenant, "50.00")
    await paid_order(http, sessions, tenant, order_id)
    r = await refund(http, tenant, order_id, f"big-{order_id}", "60.00")
    assert (r.status_code, r.json()["state"]) == (202, "awaiting_approval"), r.text
    return str(r.json()["flow_id"])


async def test_the_same_approval_twice_is_answered_twice_and_counted_once(
        http, sessions, tenant) -> None:
    flow_id = await _awaiting_refund(http, sessions, tenant, "o-twice")
    url = f"/v1/refunds/{flow_id}/approve"
    a, b = await asyncio.gather(http.post(url, json={}, headers=tenant.admin),
                                http.post(url, json={}, headers=tenant.admin))
    assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
    assert a.json()["decision"] == b.json()["decision"] == "approved"
    later = await http.post(url, json={"reason": "again"}, headers=tenant.admin)
    assert (later.status_code, later.json()["decision"]) == (200, "approved"), later.text
    other_way = await http.post(f"/v1/refunds/{flow_id}/reject", json={}, headers=tenant.admin)
    assert (other_way.status_code, other_way.json()["code"]) == (409, "decision_refused")
    s = await eventually(lambda: _status(http, tenant, flow_id),
                         lambda s: s["state"] == "refunded")
    assert s["details"]["decisions"].count("admin-alice approved") == 1, s["details"]
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "60.00"


async def test_a_decision_not_confirmed_in_time_can_be_sent_again(http, sessions, tenant,
                                                                  monkeypatch) -> None:
    flow_id = await _awaiting_refund(http, sessions, tenant, "o-slow")
    url = f"/v1/refunds/{flow_id}/approve"
    with monkeypatch.context() as m:  # the worker does not confirm within the API's patience
        m.setattr(api.decisions, "DECIDE_TIMEOUT", timedelta(milliseconds=1))
        r = await http.post(url, json={}, headers=tenant.admin)
    assert (r.status_code, r.json()["code"]) == (503, "temporal_unavailable"), r.text
    r = await eventually(lambda: http.post(url, json={}, headers=tenant.admin),
                         lambda r: r.status_code != 503, within=60)
    assert (r.status_code, r.json().get("decision")) == (200, "approved"), r.text
    s = await eventually(lambda: _status(http, tenant, flow_id),
                         lambda s: s["state"] == "refunded")
    assert s["details"]["decisions"].count("admin-alice approved") == 1, s["details"]


async def test_a_decision_signalled_before_the_flow_waits_is_applied(
        http, sessions, temporal_env, tenant) -> None:
    """An operator's `decision` signal that comes while the withdrawal still holds the funds
    (here: with its start) is kept and applied when it waits; maker-checker still holds (the
    requester's own approval is ignored, a duplicate decision id counts once)."""
    await fund(sessions, tenant, 10000)
    flow_id = f"{tenant.slug}:withdrawal:early-1"
    async with sessions.begin() as s:
        await WithdrawalQueries(s).create(tenant.id, flow_id, "user-1", 3000, "EUR",
                                             "bank_transfer", "acct_early", "shop-backend")
    inp = WithdrawalInput(tenant_id=tenant.id, flow_id=flow_id, user_id="user-1",
                          amount=Money(3000, "EUR"), method="bank_transfer",
                          destination="acct_early", requested_by="shop-backend",
                          admins=["admin-alice", "shop-backend"])
    client = temporal_env.client
    handle = await client.start_workflow(
        WithdrawalWorkflow.run, inp, id=flow_id, task_queue=TASK_QUEUE,
        start_signal="decision",
        start_signal_args=[ApprovalDecision("shop-backend", True, "own-1")])
    for _ in range(2):
        await handle.signal("decision", ApprovalDecision("admin-alice", False, "ui-1", "no"))
    assert await handle.result() == "rejected"
    s = await handle.query("status", result_type=FlowStatus)
    assert s.details["decisions"].count("admin-alice rejected") == 1, s
    assert "shop-backend: the requester cannot approve" in s.details["ignored"], s
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "100.00"


async def test_a_start_that_stops_waiting_logs_no_error(http, tenant, monkeypatch,
                                                        caplog) -> None:
    monkeypatch.setattr(api.flowstart, "WAIT_SECONDS", 0.05)
    caplog.set_level(logging.ERROR, logger="asyncio")
    for i in range(3):
        r = await http.post("/v1/topups", json={"user_id": "user-1", "amount": "10.00",
                                                "currency": "EUR"},
                            headers={**tenant.client, "Idempotency-Key": f"slow-{i}"})
        assert r.status_code in (201, 202), r.text
    gc.collect()
    await asyncio.sleep(0.1)
    assert not [x for x in caplog.records if "never retrieved" in x.getMessage()]
