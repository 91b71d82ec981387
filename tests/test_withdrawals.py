"""Withdrawals: hold, maker-checker approval from the API, a signal (the Temporal UI's payload)
and the CLI; expiry; payout confirmed or failed by webhook; limits and bad input."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from sqlalchemy import text

from contracts.approvals import ApprovalDecision
from db.tenants import TenantRepository
from tests.support import Tenant, balances, count_rows, create_tenant, eventually
from tests.test_orders import fund

ROOT = Path(__file__).resolve().parent.parent


async def settings(sessions, tenant: Tenant, **values) -> None:
    async with sessions.begin() as s:
        await s.execute(text(
            "UPDATE tenants SET settings = jsonb_set(settings, '{withdrawals}', "
            "CAST(:w AS jsonb)) WHERE id = :t"), {"w": json.dumps(values), "t": tenant.id})


async def key(sessions, tenant: Tenant, actor: str, scopes: list[str]) -> dict:
    async with sessions.begin() as s:
        k = await TenantRepository(s).create_key(tenant.id, scopes, actor)
    return {"Authorization": f"Bearer {k}"}


async def payout_account(http, tenant: Tenant, user_id: str = "user-1") -> dict:
    r = await http.get(f"/v1/users/{user_id}/payout-account", headers=tenant.client)
    return r.json() if r.status_code == 200 else {}


async def onboard(http, stripe_ctl, tenant: Tenant, user_id: str = "user-1") -> str:
    """The user's payout account (a connected account), onboarded as its owner would (the
    stand-in's control route in place of Stripe's hosted page); its ``account.updated``
    webhook enables payouts here."""
    r = await http.post("/v1/users", json={"user_id": user_id}, headers=tenant.client)
    assert r.status_code in (200, 201), r.text
    r = await http.post(f"/v1/users/{user_id}/payout-account", headers=tenant.client, json={
        "return_url": "https://app.example/payouts/done",
        "refresh_url": "https://app.example/payouts/again"})
    assert r.status_code in (200, 201), r.text
    account = r.json()["account_id"]
    if not r.json()["payouts_enabled"]:
        done = await stripe_ctl.post(f"/_standin/accounts/{account}/complete_onboarding")
        assert done.status_code == 200, done.text
        await eventually(lambda: payout_account(http, tenant, user_id),
                         lambda a: a.get("payouts_enabled") is True, within=30)
    return account


async def withdraw(http, tenant: Tenant, k: str, amount: str = "30.00", headers=None,
                   **extra) -> object:
    """A bank_transfer to the user's payout account (``onboard`` it first): no bank details."""
    body = {"user_id": "user-1", "amount": amount, "currency": "EUR",
            "method": "bank_transfer", **extra}
    return await http.post("/v1/withdrawals", json=body,
                           headers={**(headers or tenant.client), "Idempotency-Key": k})


async def state(http, tenant: Tenant, flow_id: str) -> dict:
    return (await http.get(f"/v1/withdrawals/{flow_id}", headers=tenant.admin)).json()


async def wait_state(http, tenant: Tenant, flow_id: str, wanted: str) -> dict:
    return await eventually(lambda: state(http, tenant, flow_id),
                            lambda s: s.get("state") == wanted, within=30)


async def payout_of(stripe_ctl, flow_id: str) -> dict:
    async def find() -> list:
        return (await stripe_ctl.get("/_standin/payouts", params={"flow_id": flow_id})
                ).json()["data"]
    [p] = await eventually(find, lambda ps: len(ps) == 1)
    return p


def wallet(b: dict) -> tuple[str, str, str]:
    w = b[("user_wallet", "EUR")]
    return w["posted"], w["pending_out"], w["available"]


async def test_approved_withdrawal_is_paid_out(http, stripe_ctl, sessions, tenant) -> None:
    await fund(sessions, tenant, 10000)
    account = await onboard(http, stripe_ctl, tenant)
    r = await withdraw(http, tenant, "w-1")
    assert (r.status_code, r.json()["state"]) == (202, "awaiting_approval"), r.text
    flow_id = r.json()["flow_id"]
    assert wallet(await balances(http, tenant)) == ("100.00", "30.00", "70.00")
    pending = (await http.get("/v1/withdrawals", params={"status": "awaiting_approval"},
                              headers=tenant.admin)).json()["data"]
    assert [p["flow_id"] for p in pending] == [flow_id]
    r = await http.post(f"/v1/withdrawals/{flow_id}/approve", json={"reason": "ok"},
                        headers=tenant.admin)
    assert (r.status_code, r.json()["decision"]) == (200, "approved"), r.text
    payout = await payout_of(stripe_ctl, flow_id)
    assert (payout["amount"], payout["metadata"]) == (3000, {"flow_id": flow_id,
                                                             "tenant_id": tenant.id})
    [transfer] = (await stripe_ctl.get("/_standin/transfers", params={"flow_id": flow_id})
                  ).json()["data"]
    assert (transfer["destination"], transfer["amount"]) == (account, 3000)
    await stripe_ctl.post(f"/_standin/payouts/{payout['id']}/paid")
    s = await wait_state(http, tenant, flow_id, "paid")
    assert "admin-alice approved" in s["details"]["decisions"]
    assert wallet(await balances(http, tenant)) == ("70.00", "0.00", "70.00")
    system = (await http.get("/v1/ledger/accounts", headers=tenant.admin)).json()["data"]
    assert {a["account"]: a["posted"] for a in system}["payouts_in_transit"] == "30.00"


async def test_rejected_and_failed_payouts_release_the_funds(http, stripe_ctl, sessions,
                                                             tenant) -> None:
    await fund(sessions, tenant, 10000)
    await onboard(http, stripe_ctl, tenant)
    r = await withdraw(http, tenant, "w-2")
    flow_id = r.json()["flow_id"]
    await http.post(f"/v1/withdrawals/{flow_id}/reject", json={"reason": "kyc"},
                    headers=tenant.admin)
    s = await wait_state(http, tenant, flow_id, "rejected")
    assert "kyc" in s["error"]
    assert wallet(await balances(http, tenant)) == ("100.00", "0.00", "100.00")

    r = await withdraw(http, tenant, "w-3")
    flow_id = r.json()["flow_id"]
    await http.post(f"/v1/withdrawals/{flow_id}/approve", json={}, headers=tenant.admin)
    payout = await payout_of(stripe_ctl, flow_id)
    await stripe_ctl.post(f"/_standin/payouts/{payout['id']}/fail")
    s = await wait_state(http, tenant, flow_id, "payout_failed")
    assert "account_closed" in s["error"]
    assert wallet(await balances(http, tenant)) == ("100.00", "0.00", "100.00")


async def test_no_decision_within_the_window_expires(http, stripe_ctl, sessions,
                                                     tenant) -> None:
    await fund(sessions, tenant, 10000)
    await onboard(http, stripe_ctl, tenant)
    await settings(sessions, tenant, approval_window_seconds=2)
    # principal settings are read per request, so the new window applies now
    r = await withdraw(http, tenant, "w-4")
    await wait_state(http, tenant, r.json()["flow_id"], "expired")
    assert wallet(await balances(http, tenant)) == ("100.00", "0.00", "100.00")


async def test_maker_checker_two_admins_above_threshold(http, stripe_ctl, temporal_env,
                                                        sessions, tenant) -> None:
    await fund(sessions, tenant, 100000)
    await onboard(http, stripe_ctl, tenant)
    await settings(sessions, tenant, two_admin_threshold={"EUR": "500.00"})
    bob = await key(sessions, tenant, "admin-bob", ["admin"])
    carol = await key(sessions, tenant, "carol", ["client", "admin"])
    r = await withdraw(http, tenant, "w-5", amount="600.00", headers=carol)
    assert r.json()["approvals_required"] == 2
    flow_id = r.json()["flow_id"]
    own = await http.post(f"/v1/withdrawals/{flow_id}/approve", json={}, headers=carol)
    assert (own.status_code, own.json()["code"]) == (403, "requester_cannot_approve")
    client = await http.post(f"/v1/withdrawals/{flow_id}/approve", json={},
                             headers=tenant.client)
    assert client.status_code == 403
    other = await create_tenant(sessions)
    foreign = await http.post(f"/v1/withdrawals/{flow_id}/approve", json={}, headers=other.admin)
    assert foreign.status_code == 404
    # alice approves through a signal, twice (the Temporal UI's payload): counted once
    handle = temporal_env.client.get_workflow_handle(flow_id)
    for _ in range(2):
        await handle.signal("decision", ApprovalDecision("admin-alice", True, "ui-1", "looks ok"))
    again = await http.post(f"/v1/withdrawals/{flow_id}/approve", json={},
                            headers=tenant.admin)  # alice again, through the API: counted once
    assert (again.status_code, again.json()["decision"]) == (200, "approved (1 of 2)")
    other_way = await http.post(f"/v1/withdrawals/{flow_id}/reject", json={},
                                headers=tenant.admin)  # alice changing her mind: refused
    assert (other_way.status_code, other_way.json()["code"]) == (409, "decision_refused")
    s = await state(http, tenant, flow_id)
    assert (s["state"], s["details"]["approvals"]) == ("awaiting_approval", "1 of 2")
    r = await http.post(f"/v1/withdrawals/{flow_id}/approve", json={}, headers=bob)
    assert r.json()["decision"] == "approved"
    s = await wait_state(http, tenant, flow_id, "paying_out")
    assert "admin-alice approved" in s["details"]["decisions"] and "via signal" in \
        s["details"]["decisions"]


async def test_the_cli_approves(http, stripe_ctl, sessions, database_url, temporal_address,
                                tenant) -> None:
    await fund(sessions, tenant, 10000)
    await onboard(http, stripe_ctl, tenant)
    r = await withdraw(http, tenant, "w-6")
    flow_id = r.json()["flow_id"]
    env = {**os.environ, "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": temporal_address}

    async def cli(*args: str) -> tuple[int, str]:
        p = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "cli.py"), *args, env=env, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await p.communicate()
        return p.returncode or 0, out.decode()

    code, out = await cli("withdrawal", "list", "--tenant", tenant.slug, "--status",
                          "awaiting_approval")
    assert code == 0 and flow_id in out, out
    code, out = await cli("withdrawal", "approve", flow_id, "--admin", "mallory")
    assert code == 1 and "not an admin" in out
    code, out = await cli("withdrawal", "approve", flow_id, "--admin", "admin-alice")
    assert (code, out.strip()) == (0, "approved"), out
    await wait_state(http, tenant, flow_id, "paying_out")


async def test_bad_withdrawals_hold_nothing(http, stripe_ctl, sessions, tenant) -> None:
    await fund(sessions, tenant, 10000)
    await onboard(http, stripe_ctl, tenant)
    await settings(sessions, tenant, per_request_max={"EUR": "150.00"},
                   daily_max={"EUR": "60.00"})
    cases = [
        ({"amount": "100.01"}, 402, "insufficient_funds"),
        ({"amount": "150.01"}, 422, "over_limit"),
        ({"amount": "0"}, 422, "invalid_amount"),
        ({"amount": "-1.00"}, 422, "invalid_amount"),
        ({"amount": "1.001"}, 422, "invalid_amount"),
        ({"method": "carrier_pigeon"}, 422, "validation_error"),
        ({"destination": "DE89370400440532013000"}, 422, "validation_error"),  # bank details
        ({"destination": "acct_someoneelse"}, 422, "validation_error"),
        ({"method": "paypal", "destination": "user1@example.com"}, 422, "gateway_refused"),
    ]
    for i, (extra, status, code) in enumerate(cases):
        r = await withdraw(http, tenant, f"bad-{i}", **extra)
        assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert await count_rows(sessions, "SELECT count(*) FROM transfers WHERE tenant_id = :t AND "
                            "kind = 'withdrawal'", t=tenant.id) == 0
    ok = await withdraw(http, tenant, "day-1", amount="40.00")
    assert ok.json()["state"] == "awaiting_approval"
    over = await withdraw(http, tenant, "day-2", amount="30.00")  # 40 + 30 > 60 today
    assert (over.status_code, over.json()["code"]) == (422, "over_limit"), over.text
    assert wallet(await balances(http, tenant)) == ("100.00", "40.00", "60.00")
