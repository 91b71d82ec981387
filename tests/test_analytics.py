"""GET /v1/analytics against seeded purchases, widget interactions and cashback/points transfers:
every figure equals the hand-computed value of the seeded data, nothing leaks across tenants,
admin scope only, bad periods are 422 problem+json."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.analytics import parse_period
from api.errors import ProblemError
from contracts.ledger import AccountRef, TransferRequest
from db.ledger import LedgerRepository
from tests.support import Tenant, create_tenant

START = datetime(2024, 3, 1, tzinfo=UTC)
END = datetime(2024, 4, 1, tzinfo=UTC)
PERIOD = {"from": "2024-03-01T00:00:00Z", "to": "2024-04-01T00:00:00+00:00"}

Sessions = async_sessionmaker[AsyncSession]


def at(day: int, month: int = 3, year: int = 2024, **kw: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC, **kw)


@dataclass
class Purchase:
    user: str
    platform: str
    amount: int
    currency: str
    occurred_at: datetime
    confidence: str | None = None
    method: str | None = None
    refunded: int = 0
    # cashback holds in order: (amount, final state); hold i gets key <flow>:cashback:<i>
    cashback: tuple[tuple[int, str], ...] = ()
    points: tuple[int, str] | None = None  # (points, "posted" | "pending")


async def seed(sessions: Sessions, tenant_id: str, purchases: list[Purchase],
               interactions: list[tuple[str | None, str | None, str | None, datetime]]) -> None:
    """Insert purchases and interactions, and write each purchase's cashback the way the purchase
    flow does: a pending hold, then post it, or void it (and place the next, smaller hold)."""
    async with sessions.begin() as session:
        for i, p in enumerate(purchases):
            flow = f"pur-{secrets.token_hex(6)}"
            await session.execute(text(
                "INSERT INTO purchases (tenant_id, store_order_id, flow_id, user_id, amount, "
                "currency, platform, occurred_at, attribution_method, confidence, refunded, "
                "cashback, state) VALUES (:t, :o, :f, :u, :a, :c, :p, :at, :m, :conf, :r, :cb, "
                ":st)"),
                {"t": tenant_id, "o": f"order-{i}", "f": flow, "u": p.user, "a": p.amount,
                 "c": p.currency, "p": p.platform, "at": p.occurred_at, "m": p.method,
                 "conf": Decimal(p.confidence) if p.confidence is not None else None,
                 "r": p.refunded, "cb": p.cashback[0][0] if p.cashback else 0,
                 "st": "refunded" if p.refunded else "completed"})
            ledger = LedgerRepository(session)
            funding = AccountRef("cashback_funding", "tenant", p.currency)
            wallet = AccountRef("user_wallet", p.user, p.currency)
            for n, (amount, state) in enumerate(p.cashback):
                key = f"{flow}:cashback:{n}"
                await ledger.post(tenant_id, flow, [TransferRequest(
                    key, funding, wallet, amount, p.currency, "cashback")], pending=True)
                if state != "pending":
                    await ledger.resolve(tenant_id, key, state)
            if p.points:
                points, state = p.points
                await ledger.post(tenant_id, flow, [TransferRequest(
                    f"{flow}:points", AccountRef("points_issuance", "tenant", "PTS"),
                    AccountRef("user_points", p.user, "PTS"), points, "PTS", "points_earned")],
                    pending=state == "pending")
        for user, email, session_id, occurred in interactions:
            await session.execute(text(
                "INSERT INTO widget_interactions (tenant_id, user_id, email, session_id, kind, "
                "occurred_at) VALUES (:t, :u, :e, :s, 'view', :at)"),
                {"t": tenant_id, "u": user, "e": email, "s": session_id, "at": occurred})


PURCHASES = [
    # EUR, in the period
    Purchase("u1", "widget", 8950, "EUR", at(5), "0.95", "session_match",
             cashback=((895, "posted"),), points=(89, "posted")),
    Purchase("u2", "shopify", 10000, "EUR", at(10), "0.90", "time_proximity",  # method wins
             cashback=((1000, "voided"),)),                       # cancelled: 10.00 reversed
    Purchase("u1", "woocommerce", 5001, "EUR", at(20), "0.60", "email_match", refunded=2001,
             cashback=((500, "voided"), (300, "pending")),        # reduced re-hold: 2.00 reversed
             points=(50, "posted")),
    Purchase("u3", "api", 2000, "EUR", at(25)),                   # no attribution -> none
    Purchase("u5", "shopify", 1234, "EUR", at(26), "0.75",        # no method: by confidence
             cashback=((123, "pending"),), points=(12, "pending")),
    Purchase("u2", "widget", 3, "EUR", at(27), "0.00", "no_match"),
    Purchase("u4", "api", 696, "EUR", at(28), "0.30"),            # outside every band -> other
    Purchase("u6", "api", 1000, "EUR", START, "1.00"),            # exactly at `from`: counts
    # EUR, outside the period: lifetime value only
    Purchase("u1", "widget", 100000, "EUR", at(20, 2), "0.95", "session_match",
             cashback=((10000, "posted"),), points=(1000, "posted")),
    Purchase("u2", "shopify", 700, "EUR", END, "0.90", "session_match",  # exactly at `to`
             cashback=((70, "pending"),)),
    # USD, in the period
    Purchase("u1", "shopify", 2500, "USD", at(7), "0.90", "session_match", refunded=500,
             cashback=((250, "voided"), (200, "posted")), points=(25, "posted")),
    Purchase("u6", "api", 999, "USD", END - timedelta(milliseconds=1), "0.50", "email_match",
             refunded=599, cashback=((100, "voided"), (60, "voided"), (20, "pending"))),
    Purchase("u7", "widget", 400, "USD", at(15), "0.70", "time_proximity", refunded=400,
             cashback=((40, "voided"), (24, "voided"))),          # partial, then full refund
    # USD, outside the period
    Purchase("u6", "api", 5000, "USD", at(1, 12, 2023)),
]

INTERACTIONS = [
    ("u1", None, None, at(2)), ("u1", "u1@example.com", None, at(3)),
    ("u2", None, None, at(4)),
    ("u4", None, None, START),                                    # exactly at `from`: counts
    (None, "Anon@Example.com", "s-1", at(6)), (None, "anon@example.com", None, at(7)),
    (None, None, "s-9", at(8)),
    ("u6", None, None, at(9)), ("u7", None, None, at(31, hour=23)),
    (None, None, None, at(12)),                                   # no identity: not a user
    ("u3", None, None, at(15, 2)),                                # before the period
    ("u5", None, None, END),                                      # exactly at `to`: excluded
]


def buckets(**values: tuple[str, int]) -> dict[str, dict[str, Any]]:
    return {name: {"order_value": v, "count": n} for name, (v, n) in values.items()}


EUR = {
    "currency": "EUR",
    "purchases": 8,
    "order_value": "288.84",            # 89.50 + 100.00 + 50.01 + 20.00 + 12.34 + 0.03 + 6.96 + 10
    "average_order_value": "36.11",     # 288.84 / 8 = 36.105 -> half-up 36.11
    "refunded": "20.01",
    "cashback": {"pending": "4.23",     # 3.00 re-hold + 1.23
                 "available": "8.95",
                 "reversed": "12.00"},  # 10.00 voided + (5.00 - 3.00) cut by the refund
    "points_earned": "139",             # 89 + 50 (the pending 12 is not earned yet)
    "points_pending": "12",
    "by_platform": buckets(widget=("89.53", 2), shopify=("112.34", 2),
                           woocommerce=("50.01", 1), api=("36.96", 3)),
    "by_attribution": buckets(session_match=("99.50", 2), time_proximity=("112.34", 2),
                              email_match=("50.01", 1), none=("20.03", 2), other=("6.96", 1)),
}
USD = {
    "currency": "USD",
    "purchases": 3,
    "order_value": "38.99",
    "average_order_value": "13.00",     # 38.99 / 3 = 12.9966...
    "refunded": "14.99",
    "cashback": {"pending": "0.20", "available": "2.00",
                 "reversed": "1.70"},   # (2.50 - 2.00) + (1.00 - 0.20) + (0.40 - 0)
    "points_earned": "25",
    "points_pending": "0",
    "by_platform": buckets(widget=("4.00", 1), shopify=("25.00", 1), woocommerce=("0.00", 0),
                           api=("9.99", 1)),
    "by_attribution": buckets(session_match=("25.00", 1), time_proximity=("4.00", 1),
                              email_match=("9.99", 1), none=("0.00", 0), other=("0.00", 0)),
}
LTV_EUR = {
    "currency": "EUR",
    "purchasing_users": 6,
    "total_order_value": "1295.84",
    "average_per_user": "215.97",       # 1295.84 / 6 = 215.9733...
    "top_users": [
        {"user_id": "u1", "order_value": "1139.51", "purchases": 3},
        {"user_id": "u2", "order_value": "107.03", "purchases": 3},
        {"user_id": "u3", "order_value": "20.00", "purchases": 1},
        {"user_id": "u5", "order_value": "12.34", "purchases": 1},
        {"user_id": "u6", "order_value": "10.00", "purchases": 1},
        {"user_id": "u4", "order_value": "6.96", "purchases": 1},
    ],
}
LTV_USD = {
    "currency": "USD",
    "purchasing_users": 3,
    "total_order_value": "88.99",
    "average_per_user": "29.66",        # 88.99 / 3 = 29.6633...
    "top_users": [
        {"user_id": "u6", "order_value": "59.99", "purchases": 2},
        {"user_id": "u1", "order_value": "25.00", "purchases": 1},
        {"user_id": "u7", "order_value": "4.00", "purchases": 1},
    ],
}


@pytest.fixture
async def seeded(sessions: Sessions, tenant: Tenant) -> Tenant:
    await seed(sessions, tenant.id, PURCHASES, INTERACTIONS)
    # Another tenant, same user ids, same period, a third currency: must never show up.
    other = await create_tenant(sessions, "other")
    await seed(sessions, other.id, [
        Purchase("u1", "widget", 77700, "EUR", at(5), "0.95", "session_match",
                 cashback=((7770, "pending"),), points=(777, "posted")),
        Purchase("u9", "api", 5500, "GBP", at(6), "0.80", "time_proximity",
                 cashback=((550, "voided"),)),
        Purchase("u1", "shopify", 12300, "USD", at(6, 1), "0.70"),
    ], [("u1", None, None, at(5)), ("u8", None, None, at(6)), ("u9", None, None, at(6))])
    return tenant


async def analytics(http: Any, tenant: Tenant, **params: str) -> dict[str, Any]:
    r = await http.get("/v1/analytics", params=params, headers=tenant.admin)
    assert r.status_code == 200, r.text
    return r.json()


async def test_every_figure_matches_the_seeded_data(http, seeded: Tenant) -> None:
    body = await analytics(http, seeded, **PERIOD)
    assert body == {
        "period": {"from": "2024-03-01T00:00:00+00:00", "to": "2024-04-01T00:00:00+00:00"},
        "currency": None,
        "interactions": {"count": 10, "unique_users": 7},  # u1 u2 u4 anon@ s-9 u6 u7
        "purchases": {"count": 11, "attributed": 9},
        "conversion_rate": "1.2857",                       # 9 / 7
        "currencies": [EUR, USD],
        "lifetime_value": [LTV_EUR, LTV_USD],
    }


async def test_currency_filter(http, seeded: Tenant) -> None:
    body = await analytics(http, seeded, currency="usd", **PERIOD)
    assert body["currency"] == "USD"
    assert body["interactions"] == {"count": 10, "unique_users": 7}
    assert body["purchases"] == {"count": 3, "attributed": 3}
    assert body["conversion_rate"] == "0.4286"             # 3 / 7, half-up
    assert body["currencies"] == [USD]
    assert body["lifetime_value"] == [LTV_USD]
    body = await analytics(http, seeded, currency="JPY", **PERIOD)
    assert (body["purchases"], body["currencies"], body["lifetime_value"]) == (
        {"count": 0, "attributed": 0}, [], [])


async def test_offsets_are_normalised_to_utc(http, seeded: Tenant) -> None:
    # The same instants written in +02:00 and without an offset (= UTC).
    body = await analytics(http, seeded, **{"from": "2024-03-01T02:00:00+02:00",
                                            "to": "2024-04-01T00:00:00"})
    assert body["period"] == {"from": "2024-03-01T00:00:00+00:00",
                              "to": "2024-04-01T00:00:00+00:00"}
    assert body["currencies"] == [EUR, USD]
    # One second later at both ends: the purchase at `from` leaves, the one at `to` enters.
    body = await analytics(http, seeded, **{"from": "2024-03-01T00:00:01Z",
                                            "to": "2024-04-01T00:00:01Z"})
    eur = body["currencies"][0]
    assert (eur["purchases"], eur["order_value"], eur["cashback"]["pending"]) == (
        8, "285.84", "4.93")


async def test_an_empty_tenant_has_zero_figures(http, tenant: Tenant) -> None:
    body = await analytics(http, tenant)
    assert body["interactions"] == {"count": 0, "unique_users": 0}
    assert body["purchases"] == {"count": 0, "attributed": 0}
    assert body["conversion_rate"] == "0.0000"
    assert body["currencies"] == [] and body["lifetime_value"] == []


async def test_default_period_is_the_last_30_days(http, sessions: Sessions,
                                                  tenant: Tenant) -> None:
    now = datetime.now(UTC)
    await seed(sessions, tenant.id, [
        Purchase("u1", "api", 1000, "EUR", now - timedelta(days=1), "0.95", "session_match"),
        Purchase("u1", "api", 2000, "EUR", now - timedelta(days=31)),
    ], [("u1", None, None, now - timedelta(days=2)), ("u2", None, None, now - timedelta(days=40))])
    body = await analytics(http, tenant)
    frm, to = (datetime.fromisoformat(body["period"][k]) for k in ("from", "to"))
    assert to - frm == timedelta(days=30) and abs(to - now) < timedelta(minutes=1)
    assert body["interactions"] == {"count": 1, "unique_users": 1}
    assert body["purchases"] == {"count": 1, "attributed": 1}
    assert body["conversion_rate"] == "1.0000"
    assert body["currencies"][0]["order_value"] == "10.00"
    assert body["lifetime_value"][0]["total_order_value"] == "30.00"
    # Only `from`: `to` is now.
    since = (now - timedelta(days=35)).isoformat()
    assert (await analytics(http, tenant, **{"from": since}))["purchases"]["count"] == 2


async def test_top_users_are_capped_at_ten_ties_by_user_id(http, sessions: Sessions,
                                                            tenant: Tenant) -> None:
    amounts = {f"c{i:02d}": 100 * i for i in range(1, 13)} | {"b-tie": 1100}
    await seed(sessions, tenant.id, [Purchase(u, "api", a, "JPY", at(5)) for u, a in
                                     amounts.items()], [])
    ltv = (await analytics(http, tenant, **PERIOD))["lifetime_value"]
    assert len(ltv) == 1
    assert ltv[0]["purchasing_users"] == 13
    assert ltv[0]["total_order_value"] == "8900"           # 100 * 78 + 1100, JPY has no decimals
    assert ltv[0]["average_per_user"] == "685"             # 8900 / 13 = 684.6 -> 685
    assert [(u["user_id"], u["order_value"]) for u in ltv[0]["top_users"]] == [
        ("c12", "1200"), ("b-tie", "1100"), ("c11", "1100"), ("c10", "1000"), ("c09", "900"),
        ("c08", "800"), ("c07", "700"), ("c06", "600"), ("c05", "500"), ("c04", "400")]


async def test_admin_scope_is_required(http, tenant: Tenant) -> None:
    r = await http.get("/v1/analytics", headers=tenant.client)
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "insufficient_scope"
    r = await http.get("/v1/analytics")
    assert r.status_code == 401


@pytest.mark.parametrize(("params", "code"), [
    ({"from": "2024-04-01T00:00:00Z", "to": "2024-03-01T00:00:00Z"}, "invalid_period"),
    ({"from": "2024-03-01T00:00:00Z", "to": "2024-03-01T00:00:00Z"}, "invalid_period"),
    ({"from": "2024-03-01T02:00:00+02:00", "to": "2024-03-01T00:00:00Z"}, "invalid_period"),
    ({"from": "2023-01-01T00:00:00Z", "to": "2024-01-02T00:00:01Z"}, "invalid_period"),
    ({"from": "yesterday"}, "invalid_period"),
    ({"to": "2024-13-01"}, "invalid_period"),
    ({"to": "0001-01-02T00:00:00Z"}, "invalid_period"),
    ({"from": "2999-01-01T00:00:00Z"}, "invalid_period"),
    ({"currency": "XYZ"}, "invalid_currency"),
    ({"currency": "PTS"}, "invalid_currency"),
])
async def test_bad_periods_are_422_problems(http, tenant: Tenant, params: dict[str, str],
                                            code: str) -> None:
    r = await http.get("/v1/analytics", params=params, headers=tenant.admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code


def test_366_days_is_the_longest_period() -> None:
    frm, to = parse_period("2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z", datetime.now(UTC))
    assert to - frm == timedelta(days=366)
    with pytest.raises(ProblemError):
        parse_period("2024-01-01T00:00:00Z", "2025-01-01T00:00:00.000001Z", datetime.now(UTC))
