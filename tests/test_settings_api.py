"""Tenant settings through the API and the CLI: each group round-trips, takes effect on the
next flow (withdrawal limits, the two-admin threshold, the approval window, refund thresholds
per order and cumulative, development mode), invalid values change nothing, every change is
audited (newest first, paginated), and only admins may read or change them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.money import CURRENCY_EXPONENTS
from contracts.refund import RefundInput
from contracts.settings import SettingsError, amount_setting, change
from contracts.withdrawal import WithdrawalInput
from tests.support import Tenant, count_rows, create_tenant
from tests.test_orders import fund
from tests.test_refunds import paid_order, refund
from tests.test_withdrawals import onboard, withdraw

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("rewards", "refunds", "withdrawals", "events")


async def put(http: httpx.AsyncClient, tenant: Tenant, group: str, body: Any) -> Any:
    return await http.put(f"/v1/settings/{group}", json=body, headers=tenant.admin)


async def get(http: httpx.AsyncClient, tenant: Tenant, group: str) -> Any:
    r = await http.get(f"/v1/settings/{group}", headers=tenant.admin)
    assert r.status_code == 200, r.text
    return r.json()


async def audit(http: httpx.AsyncClient, tenant: Tenant, **params: Any) -> list[dict]:
    r = await http.get("/v1/settings/audit", params=params, headers=tenant.admin)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def started_with(temporal_env: Any, flow_id: str, kind: type) -> Any:
    """The input a flow's workflow was started with."""
    history = await temporal_env.client.get_workflow_handle(flow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [value] = await temporal_env.client.data_converter.decode(started.input.payloads, [kind])
    return value


async def test_each_group_round_trips_and_each_change_is_audited(http, sessions, tenant) -> None:
    assert await get(http, tenant, "refunds") == {"approval_threshold": {}}
    assert await get(http, tenant, "withdrawals") == {
        "per_request_max": {}, "daily_max": {}, "two_admin_threshold": {},
        "approval_window_seconds": 72 * 3600}
    assert await get(http, tenant, "events") == {"development": False}
    changes = [
        ("refunds", {"approval_threshold": {"EUR": "100", "JPY": 5000}},
         {"approval_threshold": {"EUR": "100.00", "JPY": "5000"}}),
        ("withdrawals", {"per_request_max": {"EUR": "150.5"}, "approval_window_seconds": 3600},
         {"per_request_max": {"EUR": "150.50"}, "daily_max": {}, "two_admin_threshold": {},
          "approval_window_seconds": 3600}),
        ("events", {"development": True}, {"development": True}),
        ("rewards", {"cashback_rate": "0.05", "tier_thresholds": {
            "silver": 10, "gold": 20, "platinum": 30}}, None),
        ("withdrawals", {"approval_window_seconds": None, "daily_max": {"USD": "10.00"}},
         {"per_request_max": {"EUR": "150.50"}, "daily_max": {"USD": "10.00"},
          "two_admin_threshold": {}, "approval_window_seconds": 72 * 3600}),
    ]
    before: dict[str, Any] = {}
    for group, body, expected in changes:
        before.setdefault(group, await get(http, tenant, group))
        r = await put(http, tenant, group, body)
        assert r.status_code == 200, r.text
        if expected is not None:
            assert r.json() == expected
        assert await get(http, tenant, group) == r.json()
    rewards = await get(http, tenant, "rewards")
    assert (rewards["cashback_rate"], rewards["tier_thresholds"]["gold"]) == ("0.05", 20)
    # the same values again change nothing, and are not recorded
    assert (await put(http, tenant, "events", {"development": True})).status_code == 200
    rows = await audit(http, tenant)
    assert [r["group"] for r in rows] == [g for g, _, _ in reversed(changes)]
    assert {(r["actor"], r["key_id"]) for r in rows} == {
        ("admin-alice", "_".join(tenant.admin_key.split("_")[:2]))}
    assert rows[-1]["old"] == {"approval_threshold": {}}
    assert rows[-1]["new"] == {"approval_threshold": {"EUR": "100.00", "JPY": "5000"}}
    assert rows[0]["old"]["approval_window_seconds"] == 3600
    assert rows[0]["new"]["daily_max"] == {"USD": "10.00"}
    # newest first, page by page with the cursor
    r = await http.get("/v1/settings/audit", params={"limit": 2}, headers=tenant.admin)
    seen, page = [], r.json()
    while True:
        seen += [row["id"] for row in page["data"]]
        if page["next_cursor"] is None:
            break
        page = (await http.get("/v1/settings/audit", headers=tenant.admin, params={
            "limit": 2, "cursor": page["next_cursor"]})).json()
    assert seen == [row["id"] for row in rows]
    assert [r["group"] for r in await audit(http, tenant, group="withdrawals")] == [
        "withdrawals", "withdrawals"]
    other = await create_tenant(sessions)
    assert await audit(http, other) == []
    bad = await http.get("/v1/settings/audit", params={"cursor": "bm90LWFuLWlk"},
                         headers=tenant.admin)
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_cursor")


async def test_only_admins_read_or_change_settings(http, tenant) -> None:
    for group in GROUPS:
        r = await http.get(f"/v1/settings/{group}", headers=tenant.client)
        assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
        r = await http.put(f"/v1/settings/{group}", json={}, headers=tenant.client)
        assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
    r = await http.get("/v1/settings/audit", headers=tenant.client)
    assert r.status_code == 403
    assert await get(http, tenant, "events") == {"development": False}


async def test_withdrawal_settings_apply_to_the_next_withdrawal(http, stripe_ctl, sessions,
                                                                temporal_env, tenant) -> None:
    await fund(sessions, tenant, 10000)
    await onboard(http, stripe_ctl, tenant)
    assert (await withdraw(http, tenant, "before", amount="30.00")).status_code == 202
    r = await put(http, tenant, "withdrawals", {"per_request_max": {"EUR": "20.00"}})
    assert r.status_code == 200, r.text
    over = await withdraw(http, tenant, "over", amount="30.00")
    assert (over.status_code, over.json()["code"]) == (422, "over_limit"), over.text
    assert "20.00 EUR" in over.json()["detail"]
    r = await put(http, tenant, "withdrawals", {
        "per_request_max": None, "two_admin_threshold": {"EUR": "25.00"},
        "daily_max": {"EUR": "70.00"}, "approval_window_seconds": 600})
    assert r.status_code == 200, r.text
    two = await withdraw(http, tenant, "two", amount="30.00")
    assert (two.status_code, two.json()["approvals_required"]) == (202, 2), two.text
    inp = await started_with(temporal_env, two.json()["flow_id"], WithdrawalInput)
    assert (inp.approval_window_seconds, inp.daily_max, inp.approvals_required) == (600, 7000, 2)
    day = await withdraw(http, tenant, "day", amount="20.00")  # 30 + 30 + 20 > 70 today
    assert (day.status_code, day.json()["code"]) == (422, "over_limit"), day.text


async def test_refund_threshold_counts_the_orders_refunds_so_far(http, sessions, temporal_env,
                                                                 tenant) -> None:
    r = await put(http, tenant, "refunds", {"approval_threshold": {"EUR": "50.00"}})
    assert r.status_code == 200, r.text
    await paid_order(http, sessions, tenant, "cum-1")
    first = await refund(http, tenant, "cum-1", "cum-a", "30.00")
    assert (first.status_code, first.json()["state"]) == (201, "refunded"), first.text
    assert first.json()["needs_approval"] is False
    # 30 refunded + 30 asked reach 50: an admin approves, though 30 alone is below it
    second = await refund(http, tenant, "cum-1", "cum-b", "30.00")
    assert (second.status_code, second.json()["state"]) == (202, "awaiting_approval"), second.text
    inp = await started_with(temporal_env, second.json()["flow_id"], RefundInput)
    assert inp.needs_approval is True
    # the one awaiting approval counts too (reserved): 60 + 10 ≥ 50
    third = await refund(http, tenant, "cum-1", "cum-c", "10.00")
    assert (third.status_code, third.json()["state"]) == (202, "awaiting_approval"), third.text
    # raised threshold: applies from the next refund on (70 held + 10 < 1000)
    assert (await put(http, tenant, "refunds", {"approval_threshold": {"EUR": "1000.00"}})
            ).status_code == 200
    fourth = await refund(http, tenant, "cum-1", "cum-d", "10.00")
    assert (fourth.status_code, fourth.json()["state"]) == (201, "refunded"), fourth.text
    # another order starts from nothing (paid from the 40.00 refunded to the wallet)
    assert (await put(http, tenant, "refunds", {"approval_threshold": {"EUR": "50.00"}})
            ).status_code == 200
    await paid_order(http, sessions, tenant, "cum-2", amount="40.00", fund_with=0)
    other = await refund(http, tenant, "cum-2", "cum-e", "40.00")
    assert (other.status_code, other.json()["state"]) == (201, "refunded"), other.text


async def test_concurrent_refunds_count_each_other(http, sessions, tenant) -> None:
    """Two €30 refunds at once on a €100 order, threshold €50: they cannot both slip under
    it (the order's lock serialises the decision)."""
    assert (await put(http, tenant, "refunds", {"approval_threshold": {"EUR": "50.00"}})
            ).status_code == 200
    await paid_order(http, sessions, tenant, "cum-3")
    a, b = await asyncio.gather(refund(http, tenant, "cum-3", "par-a", "30.00"),
                                refund(http, tenant, "cum-3", "par-b", "30.00"))
    assert sorted([a.json()["state"], b.json()["state"]]) == ["awaiting_approval", "refunded"], (
        a.text, b.text)


async def test_development_mode_lets_endpoints_use_local_receivers(http, tenant) -> None:
    local = {"url": "http://127.0.0.1:9/hook"}
    r = await http.post("/v1/webhook-endpoints", json=local, headers=tenant.admin)
    assert (r.status_code, r.json()["code"]) == (422, "url_not_allowed")
    assert (await put(http, tenant, "events", {"development": True})).status_code == 200
    r = await http.post("/v1/webhook-endpoints", json=local, headers=tenant.admin)
    assert r.status_code == 201, r.text
    assert (await put(http, tenant, "events", {"development": None})).json() == {
        "development": False}
    r = await http.post("/v1/webhook-endpoints", json=local, headers=tenant.admin)
    assert r.status_code == 422


def test_development_mode_is_refused_in_production() -> None:
    with pytest.raises(SettingsError, match="production"):
        change("events", {}, {"development": True}, production=True)
    assert change("events", {"development": True}, {"development": False}, production=True
                  ) == {"development": False}


# -- invalid values: 422, nothing changed, nothing audited -----------------------------------

_NOT_CURRENCY = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZeurXYZ", min_size=1, max_size=4
                        ).filter(lambda c: c not in CURRENCY_EXPONENTS)
_BAD_AMOUNT = st.one_of(
    st.sampled_from(["0", "0.00", "-1.00", "1.001", "abc", "1e5", "", " ", "NaN",
                     "10000000000.01", "99999999999999999999"]),
    st.booleans(), st.lists(st.integers(), max_size=2), st.integers(max_value=0),
    st.integers(min_value=10**12 + 1), st.dictionaries(st.just("EUR"), st.just("1.00")))
_BAD_MAP = st.one_of(
    st.dictionaries(_NOT_CURRENCY, st.just("10.00"), min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(["EUR", "USD", "JPY"]), _BAD_AMOUNT, min_size=1, max_size=2),
    st.sampled_from(["EUR 10", 10, True, ["EUR"]]))
_BAD_WINDOW = st.one_of(st.integers(max_value=59), st.integers(min_value=366 * 86400 + 1),
                        st.sampled_from(["3600", True, 3600.5, [3600], {}]))
_BAD_RATE = st.sampled_from(["1.5", "-0.1", "0.12345", "abc", 0.1, 1, True, "", "2"])


def invalid_changes() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(group, body) with at least one value or field the rules refuse."""
    unknown = st.sampled_from(GROUPS).map(lambda g: (g, {"approval_thresholds": {"EUR": "1"}}
                                                     if g != "rewards" else {"cashback": "0.1"}))
    return st.one_of(
        unknown,
        _BAD_MAP.map(lambda v: ("refunds", {"approval_threshold": v})),
        st.tuples(st.sampled_from(["per_request_max", "daily_max", "two_admin_threshold"]),
                  _BAD_MAP).map(lambda f: ("withdrawals", {f[0]: f[1]})),
        _BAD_WINDOW.map(lambda v: ("withdrawals", {"approval_window_seconds": v,
                                                   "daily_max": {"EUR": "5.00"}})),
        st.sampled_from(["true", 1, 0, [], "yes"]).map(lambda v: ("events", {"development": v})),
        st.tuples(st.sampled_from(["cashback_rate", "min_confidence"]), _BAD_RATE).map(
            lambda f: ("rewards", {f[0]: f[1]})),
        st.sampled_from([{"silver": 30, "gold": 20, "platinum": 40}, {"silver": 0, "gold": 1,
                         "platinum": 2}, {"silver": 5}, {"bronze": 1}]).map(
            lambda t: ("rewards", {"tier_thresholds": t, "cashback_rate": "0.2"})),
        st.sampled_from([[], "x", 1]).map(lambda b: ("refunds", b)))


def _probe(base_url: str, tenant: Tenant) -> list[str]:
    """Blocking (in a thread while the loop serves the API): every invalid change is 422 and
    leaves the group as it was."""
    failures: list[str] = []

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(invalid_changes())
    def each(case: tuple[str, Any]) -> None:
        group, body = case
        with httpx.Client(base_url=base_url, headers=tenant.admin, timeout=30) as c:
            before = c.get(f"/v1/settings/{group}").json()
            r = c.put(f"/v1/settings/{group}", content=json.dumps(body))
            after = c.get(f"/v1/settings/{group}").json()
        if r.status_code != 422 or r.json()["code"] != "validation_error" or after != before:
            failures.append(f"{group} {body!r}: {r.status_code} {r.text[:200]}")

    each()
    return failures


async def test_invalid_values_are_refused_and_change_nothing(api, worker, http, sessions,
                                                             tenant) -> None:
    assert (await put(http, tenant, "withdrawals", {"daily_max": {"EUR": "9.00"}})
            ).status_code == 200
    failures = await asyncio.to_thread(_probe, api.url, tenant)
    assert not failures, "\n".join(failures[:10])
    assert await count_rows(sessions, "SELECT count(*) FROM settings_audit WHERE tenant_id = :t",
                            t=tenant.id) == 1


@given(st.dictionaries(st.sampled_from(sorted(CURRENCY_EXPONENTS)),
                       st.integers(min_value=1, max_value=10**12), max_size=5))
def test_valid_limits_are_kept_exactly(units: dict[str, int]) -> None:
    """A valid amount is stored as the currency's decimal string and read back by the flows
    as the same minor units (JPY, KRW and PTS have no decimals)."""
    given_ = {c: str(Decimal(u).scaleb(-CURRENCY_EXPONENTS[c])) for c, u in units.items()}
    stored = change("withdrawals", {}, {"daily_max": given_})
    assert {c: amount_setting(stored, "withdrawals", "daily_max", c) for c in units} == units
    assert {c: Decimal(v) for c, v in stored["withdrawals"]["daily_max"].items()} == {
        c: Decimal(v) for c, v in given_.items()}


# -- the CLI ---------------------------------------------------------------------------------


async def cli(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    p = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "cli.py"), "settings", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await p.communicate()
    return p.returncode or 0, out.decode(), err.decode()


async def test_the_cli_sets_shows_and_audits(http, database_url, tenant) -> None:
    code, out, err = await cli(database_url, "set", "--tenant", tenant.slug, "refunds", "--json",
                               '{"approval_threshold": {"EUR": 75.5}}')
    assert code == 0, err
    assert json.loads(out) == {"approval_threshold": {"EUR": "75.50"}}
    assert await get(http, tenant, "refunds") == {"approval_threshold": {"EUR": "75.50"}}
    code, out, err = await cli(database_url, "set", "--tenant", tenant.slug, "withdrawals",
                               "--json", '{"daily_max": {"EUR": "-5"}}', "--actor", "ops-bob")
    assert (code, out) == (1, "") and "greater than zero" in err, err
    code, out, err = await cli(database_url, "set", "--tenant", tenant.slug, "events",
                               "--json", '{"development": true}', "--actor", "ops-bob")
    assert code == 0, err
    code, out, err = await cli(database_url, "show", "--tenant", tenant.slug)
    shown = json.loads(out)
    assert (shown["refunds"], shown["events"]) == (
        {"approval_threshold": {"EUR": "75.50"}}, {"development": True})
    assert shown["withdrawals"]["daily_max"] == {}
    code, out, err = await cli(database_url, "show", "--tenant", tenant.slug, "withdrawals")
    assert json.loads(out)["approval_window_seconds"] == 72 * 3600
    rows = await audit(http, tenant)
    assert [(r["group"], r["actor"], r["key_id"]) for r in rows][0] == (
        "events", "ops-bob", None)
    assert rows[1]["actor"].startswith("cli:") and rows[1]["group"] == "refunds"
    code, out, err = await cli(database_url, "audit", "--tenant", tenant.slug)
    assert code == 0 and "ops-bob" in out.splitlines()[0], out
