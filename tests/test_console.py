"""The Temporal UI as an admin's console: every flow carries search attributes (tenant, user,
kind, amount; its state upserted as it goes), a static summary and details, current details
saying what it waits for (for an approval: who may decide and the exact JSON to send), and
described signals; and a flow's status is read without a worker (Temporal's own record)."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle

from contracts.money import Money
from contracts.topup import TopUpInput
from db.flows import FlowRepository
from temporal_client import dev_server_args
from tests.support import Tenant, create_tenant, eventually, flow_status, topup
from tests.test_refunds import needs_approval_above, paid_order, refund
from worker import build_gateways, build_worker
from workflows import console

EXACT_JSON = re.compile(r"`(\{[^`]*\"approve\": true[^`]*\})`")


async def attrs_of(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    desc = await handle.describe()
    found = desc.typed_search_attributes
    return {key.name: found.get(key) for key in (console.TENANT, console.USER, console.KIND,
                                                 console.STATE, console.AMOUNT, console.CURRENCY)}


async def listed(client: Client, query: str) -> list[str]:
    return sorted([w.id async for w in client.list_workflows(query)])


async def metadata(handle: WorkflowHandle[Any, Any]) -> WorkflowMetadata:
    return await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)


async def test_an_approval_is_found_read_and_decided_from_the_console(
        http, temporal_env, sessions, tenant) -> None:
    """A refund awaiting approval: found by the UI's query, its summary and details say what
    it is, its current details who may decide and the JSON to send; sending that JSON as the
    `decision` signal (what an admin does in the UI) approves it."""
    client: Client = temporal_env.client
    await needs_approval_above(sessions, tenant, "50.00")
    await paid_order(http, sessions, tenant, "console-1")
    r = await refund(http, tenant, "console-1", "console-big", "60.00")
    assert r.status_code == 202 and r.json()["state"] == "awaiting_approval", r.text
    flow_id = r.json()["flow_id"]
    handle = client.get_workflow_handle(flow_id)

    attrs = await eventually(lambda: attrs_of(handle),
                             lambda a: a["WalletflowState"] == "awaiting_approval")
    assert attrs == {"WalletflowTenant": tenant.slug, "WalletflowUser": "user-1",
                     "WalletflowKind": "refund", "WalletflowState": "awaiting_approval",
                     "WalletflowAmount": 6000, "WalletflowCurrency": "EUR"}
    waiting = (f'WalletflowTenant = "{tenant.slug}" AND '
               f'WalletflowState = "awaiting_approval"')
    assert await eventually(lambda: listed(client, waiting), lambda ids: ids == [flow_id])
    mine = f'WalletflowTenant = "{tenant.slug}" AND WalletflowUser = "user-1"'
    assert flow_id in await eventually(lambda: listed(client, mine),
                                       lambda ids: flow_id in ids)

    desc = await handle.describe()
    summary, details = await desc.static_summary(), await desc.static_details()
    assert summary == f"refund of 60.00 EUR for user-1 ({tenant.slug})", summary
    assert details and f"tenant `{tenant.slug}`" in details and "`console-1`" in details

    meta = await metadata(handle)
    assert "admin-alice" in meta.current_details, meta.current_details
    assert "awaiting_approval" in meta.current_details
    signals = {d.name: d.description for d in meta.definition.signal_definitions}
    updates = {d.name: d.description for d in meta.definition.update_definitions}
    assert "same as the gateway saying it" in signals["refund_event"]
    assert signals["decision"] and updates["decide"] and updates["outcome"]
    [exact] = EXACT_JSON.findall(meta.current_details)
    decision = json.loads(exact)
    assert (decision["admin"], decision["approve"]) == ("admin-alice", True)

    await handle.signal("decision", decision)  # what the UI's "Send a Signal" sends
    await eventually(lambda: attrs_of(handle), lambda a: a["WalletflowState"] == "refunded")
    assert await eventually(lambda: listed(client, waiting), lambda ids: not ids) == []
    assert (await flow_status(http, tenant, flow_id))["state"] == "refunded"
    meta = await metadata(handle)
    assert "nothing: the flow has ended" in meta.current_details, meta.current_details


async def test_a_status_read_answers_from_temporal_when_no_worker_does(
        start_api, temporal_env, sessions, settings) -> None:
    """A top-up started while a worker ran, read after the worker stopped: 200 with the state
    it was in, from Temporal's record (where the `status` query alone answered 503)."""
    tenant = await create_tenant(sessions, "console")
    queue = f"console-{secrets.token_hex(4)}"
    api = await start_api(temporal_task_queue=queue)
    gateways = build_gateways(settings)
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
            async with build_worker(temporal_env.client, queue, sessions, gateways):
                r = await topup(http, tenant, "no-worker", amount="12.50", currency="EUR")
                assert (r.status_code, r.json()["state"]) == (201, "awaiting_payment"), r.text
                flow_id = r.json()["flow_id"]
                handle = temporal_env.client.get_workflow_handle(flow_id)
                await eventually(lambda: attrs_of(handle),
                                 lambda a: a["WalletflowState"] == "awaiting_payment")
            r = await http.get(f"/v1/flows/{flow_id}", headers=tenant.client)
    finally:
        for gw in gateways.values():
            await gw.close()
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["state"], body["source"], body["kind"], body["user_id"]) == (
        "awaiting_payment", "temporal_visibility", "topup", "user-1"), body
    assert body["amounts"] == {"amount": "12.50", "currency": "EUR"}
    await handle.terminate("test over")


async def test_a_flow_no_worker_ever_ran_answers_at_once(http, temporal_env, sessions,
                                                         tenant: Tenant) -> None:
    """No worker polls the flow's task queue at all: the API does not wait for the query's
    timeout; it answers from Temporal's record that the flow runs."""
    flow_id = f"{tenant.slug}:topup:never-run"
    async with sessions.begin() as s:
        await FlowRepository(s).claim(tenant.id, "never-run", flow_id, "topup", "user-1", "x")
    inp = TopUpInput(tenant_id=tenant.id, user_id="user-1", flow_id=flow_id,
                     charge=Money(700, "EUR"), credit=Money(700, "EUR"))
    handle = await temporal_env.client.start_workflow(
        "TopUpWorkflow", inp, id=flow_id, task_queue=f"nobody-{secrets.token_hex(4)}",
        **console.start_options("topup", tenant.slug, inp))
    try:
        r = await http.get(f"/v1/flows/{flow_id}", headers=tenant.client)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["state"], body["source"], body["execution_status"]) == (
            "processing", "temporal_visibility", "RUNNING"), body
        assert body["amounts"] == {"amount": "7.00", "currency": "EUR"}
    finally:
        await handle.terminate("test over")



def test_the_compose_stack_registers_every_search_attribute() -> None:
    """A cluster refuses a start naming an unregistered attribute: docker-compose.yml's
    temporal-namespace job registers each one (the dev server gets them from
    ``temporal_client.dev_server_args``)."""
    compose = (Path(__file__).resolve().parent.parent / "docker-compose.yml").read_text()
    assert [f"{n}:{t}" for n, t in console.SEARCH_ATTRIBUTES.items()
            if f"{n}:{t}" not in compose] == []
    args = dev_server_args()
    assert all(f"{n}={t}" in args for n, t in console.SEARCH_ATTRIBUTES.items())
