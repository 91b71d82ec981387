"""The janitor (workflows/janitor.py, run here once as its schedule would) and the outbox
dispatcher's resilience: a paid top-up whose webhooks were all lost is credited by the janitor
long before its expiry; a claimed flow row that never got a workflow is removed and no longer
shows as `archived`; a delivery whose workflow already exists never stalls the rows behind it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from temporalio.client import ScheduleActionStartWorkflow

from contracts.reconcile import JANITOR_SCHEDULE_ID, JanitorInput, JanitorResult
from db.flows import FlowRepository
from db.outbox import emit
from dispatcher import Dispatcher
from schedules import ensure_janitor_schedule
from tests.conftest import TASK_QUEUE
from tests.support import (
    LiveServer,
    Tenant,
    balances,
    eventually,
    flow_status,
    tenant_transfers,
    topup,
    wait_state,
)
from tests.test_webhooks_out import Receiver, dev_mode, endpoint
from workflows.janitor import JanitorWorkflow


async def run_janitor(temporal_env: Any, tenant: Tenant, **options: Any) -> JanitorResult:
    """One run of the janitor, as its schedule starts it, scoped to the test's tenant."""
    return await temporal_env.client.execute_workflow(
        JanitorWorkflow.run, JanitorInput(tenant_id=tenant.id, **options),
        id=f"janitor-test-{uuid.uuid4().hex[:8]}", task_queue=TASK_QUEUE)


async def test_paid_topup_with_lost_webhooks_is_credited_by_the_janitor(
        http, stripe_ctl, sessions, tenant, temporal_env) -> None:
    r = await topup(http, tenant, "lost-all", amount="8.00", currency="EUR")
    assert r.status_code == 201, r.text
    flow_id, payment_id = r.json()["flow_id"], r.json()["payment"]["payment_id"]
    await stripe_ctl.post("/_standin/faults", json={
        "operation": "webhook", "mode": "drop", "count": 50, "match": {"flow_id": flow_id}})
    paid = await stripe_ctl.post(f"/_standin/payment_intents/{payment_id}/succeed")
    assert paid.status_code == 200, paid.text
    # The top-up expires in 30 minutes: only the janitor can credit it within this test.
    assert (await flow_status(http, tenant, flow_id))["state"] == "awaiting_payment"
    assert await tenant_transfers(sessions, tenant) == 0

    result = await run_janitor(temporal_env, tenant, stale_after_seconds=0)
    assert result.nudged == [flow_id]
    status = await wait_state(http, tenant, flow_id, "completed")
    steps = [s["name"] for s in status["steps"]]
    assert "gateway_succeeded" in steps and "expiry_reached" not in steps
    assert (await balances(http, tenant))[("user_wallet", "EUR")]["available"] == "8.00"
    assert await tenant_transfers(sessions, tenant) == 1

    again = await run_janitor(temporal_env, tenant, stale_after_seconds=0)
    assert (again.nudged, again.drifts) == ([], 0)


async def test_janitor_leaves_a_payment_young_enough_for_its_webhook(
        http, stripe_ctl, sessions, tenant, temporal_env) -> None:
    r = await topup(http, tenant, "young", amount="3.00", currency="EUR")
    flow_id, payment_id = r.json()["flow_id"], r.json()["payment"]["payment_id"]
    await stripe_ctl.post("/_standin/faults", json={
        "operation": "webhook", "mode": "drop", "count": 50, "match": {"flow_id": flow_id}})
    await stripe_ctl.post(f"/_standin/payment_intents/{payment_id}/succeed")
    result = await run_janitor(temporal_env, tenant, stale_after_seconds=3600)
    assert (result.nudged, result.drifts) == ([], 0)
    assert (await flow_status(http, tenant, flow_id))["state"] == "awaiting_payment"


async def _claim(sessions, tenant: Tenant, key: str, age_seconds: int) -> str:
    """A flow row claimed as the API claims one, with no workflow started for it."""
    flow_id = f"{tenant.slug}:topup:{key}"
    async with sessions.begin() as session:
        await FlowRepository(session).claim(tenant.id, key, flow_id, "topup", tenant.user_id,
                                            "digest")
        await session.execute(text(
            "UPDATE flows SET created_at = now() - make_interval(secs => :age) "
            "WHERE flow_id = :f"), {"age": float(age_seconds), "f": flow_id})
    return flow_id


async def test_orphan_flow_row_is_removed_and_no_longer_archived(http, sessions, tenant,
                                                                  temporal_env) -> None:
    orphan = await _claim(sessions, tenant, "orphan-1", 3600)
    fresh = await _claim(sessions, tenant, "orphan-2", 0)  # its start may still be under way
    assert (await flow_status(http, tenant, orphan))["state"] == "archived"

    result = await run_janitor(temporal_env, tenant, orphan_grace_seconds=600)
    assert result.orphans_removed == [orphan]
    r = await http.get(f"/v1/flows/{orphan}", headers=tenant.client)
    assert r.status_code == 404, r.text
    assert (await flow_status(http, tenant, fresh))["state"] == "archived"
    # The key is free again: a retried request starts the flow afresh.
    r = await topup(http, tenant, "orphan-1", amount="5.00", currency="EUR")
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "awaiting_payment"


async def _deliveries(sessions, tenant: Tenant) -> list[tuple[str, str, bool]]:
    async with sessions() as session:
        rows = await session.execute(text(
            "SELECT d.id, d.status, d.started_at IS NOT NULL AS started FROM webhook_deliveries d "
            "JOIN outbox_events o ON o.id = d.event_id WHERE d.tenant_id = :t ORDER BY o.id"),
            {"t": tenant.id})
        return [(r.id, r.status, r.started) for r in rows]


async def _emit(sessions, tenant: Tenant, n: int) -> None:
    async with sessions.begin() as session:
        await emit(session, tenant.id, f"janitor-test:{n}", "topup.completed",
                   {"n": n, "state": "completed"})


async def test_dispatcher_survives_an_already_started_delivery(http, sessions, tenant,
                                                               temporal_env) -> None:
    rec = Receiver()
    server = await LiveServer(rec.app()).start()
    try:
        await dev_mode(sessions, tenant)
        await endpoint(http, tenant, server.url + "/hook", ["topup.completed"])
        await _emit(sessions, tenant, 1)
        [(first, _, _)] = await eventually(lambda: _deliveries(sessions, tenant),
                                           lambda d: [s for _, s, _ in d] == ["delivered"])
        # A round that started this delivery's workflow and then failed to commit: the row is
        # unstarted again while its workflow has finished.
        async with sessions.begin() as session:
            await session.execute(text("UPDATE webhook_deliveries SET status = 'pending', "
                                       "started_at = NULL WHERE id = :d"), {"d": first})
        await _emit(sessions, tenant, 2)
        await _emit(sessions, tenant, 3)
        await Dispatcher(temporal_env.client, sessions, TASK_QUEUE).tick()
        rows = await eventually(lambda: _deliveries(sessions, tenant),
                                lambda d: [s for _, s, _ in d[1:]] == ["delivered"] * 2)
        assert rows[0] == (first, "pending", True)  # marked started, not started twice
        assert len(rec.received) == 3
    finally:
        await server.stop()


async def test_the_janitor_schedule_is_ensured_idempotently(temporal_env) -> None:
    client = temporal_env.client
    try:
        await ensure_janitor_schedule(client, "janitor-schedule-test", 3600)
        await ensure_janitor_schedule(client, "janitor-schedule-test", 600)  # a restart
        desc = await client.get_schedule_handle(JANITOR_SCHEDULE_ID).describe()
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert (action.workflow, action.task_queue) == ("JanitorWorkflow",
                                                         "janitor-schedule-test")
        assert [i.every for i in desc.schedule.spec.intervals] == [timedelta(seconds=600)]
    finally:
        await client.get_schedule_handle(JANITOR_SCHEDULE_ID).delete()
