"""Tenant analytics: read-only aggregates over purchases, widget interactions and the ledger's
cashback and points transfers. Like the other repositories it never commits (nor writes).

Amounts are integers in minor units here; the API formats them. Definitions:

* Period: ``start <= occurred_at < end`` (half-open), on ``purchases.occurred_at`` and
  ``widget_interactions.occurred_at``. Ledger figures (cashback, points) belong to the purchases
  of the period (joined on ``transfers.flow_id = purchases.flow_id``), whenever they were posted.
* Unique interacting users: distinct identities among the period's interactions, the identity
  being the user id, else the lower-cased e-mail, else the session id. Interactions with none of
  the three count as interactions but not as users.
* Attributed purchases: ``confidence > 0`` (NULL is not attributed).
* Conversion rate: attributed purchases / unique interacting users (not capped at 1: purchases are
  not restricted to interacting users), rounded half-up to 4 places; 0 without interactions.
* Order value: gross ``purchases.amount`` of every purchase, whatever its state; refunds are
  reported separately (``purchases.refunded``). Averages are rounded half-up to the minor unit.
* Cashback (ledger transfers of kind ``cashback`` of the period's purchases):
  pending = sum of pending ones, available = sum of posted ones, reversed = per purchase, the
  original cashback (its first cashback transfer, the ``<flow>:cashback:0`` hold) minus what is
  still live (pending + posted), never below 0. A partial refund voids the hold and places a
  smaller one, so this equals sum(voided) - sum(re-holds) without depending on key names.
* Points: transfers of kind ``points_earned`` of the period's purchases; earned = posted,
  pending = pending (voided ones are not counted).
* Attribution bands: ``attribution_method`` when it names one (``session_match``,
  ``time_proximity``, ``email_match``; ``no_match``/``none`` -> ``none``); otherwise by
  confidence: NULL or 0 -> none, >= 0.90 -> session_match, >= 0.70 -> time_proximity,
  >= 0.50 -> email_match, anything else (0.01-0.49) -> ``other``. Bands always add up to the
  total.
* Lifetime value: over all of the tenant's purchases (any date), per currency: total order value
  / number of distinct purchasing users, and the top users by total order value (ties by user id).
* A currency filter restricts every purchase-derived figure (counts, conversion numerator,
  money, lifetime value); interactions have no currency and are never filtered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.money import round_half_up
from contracts.rewards import PLATFORMS

BANDS = ("session_match", "time_proximity", "email_match", "none", "other")
TOP_USERS = 10
RATE_PLACES = Decimal("0.0001")

_PERIOD = "tenant_id = :t AND occurred_at >= :start AND occurred_at < :end"
_CURRENCY = " AND currency = :cur"

_INTERACTIONS = (
    "SELECT count(*) AS n, count(DISTINCT CASE "
    "WHEN user_id IS NOT NULL THEN 'u:' || user_id "
    "WHEN email IS NOT NULL THEN 'e:' || lower(email) "
    "WHEN session_id IS NOT NULL THEN 's:' || session_id END) AS users "
    "FROM widget_interactions WHERE " + _PERIOD
)

_BAND = (
    "CASE WHEN attribution_method IN ('session_match', 'time_proximity', 'email_match') "
    "THEN attribution_method "
    "WHEN attribution_method IN ('no_match', 'none') THEN 'none' "
    "WHEN confidence IS NULL OR confidence = 0 THEN 'none' "
    "WHEN confidence >= 0.90 THEN 'session_match' "
    "WHEN confidence >= 0.70 THEN 'time_proximity' "
    "WHEN confidence >= 0.50 THEN 'email_match' "
    "ELSE 'other' END"
)

_PURCHASES = (
    f"SELECT currency, platform, {_BAND} AS band, count(*) AS n, sum(amount) AS value, "
    "sum(refunded) AS refunded, count(*) FILTER (WHERE confidence > 0) AS attributed "
    "FROM purchases WHERE " + _PERIOD + "{currency} GROUP BY 1, 2, 3"
)

# Per purchase of the period (index purchases_tenant_time), its cashback/points transfers
# (index transfers_flow), then per currency.
_LEDGER = (
    "WITH p AS (SELECT flow_id, currency FROM purchases WHERE " + _PERIOD + "{currency}), "
    "f AS (SELECT p.currency, "
    "sum(t.amount) FILTER (WHERE t.kind = 'cashback' AND t.state = 'pending') AS pending, "
    "sum(t.amount) FILTER (WHERE t.kind = 'cashback' AND t.state = 'posted') AS available, "
    "(array_agg(t.amount ORDER BY t.id) FILTER (WHERE t.kind = 'cashback'))[1] AS original, "
    "sum(t.amount) FILTER (WHERE t.kind = 'points_earned' AND t.state = 'posted') AS points, "
    "sum(t.amount) FILTER (WHERE t.kind = 'points_earned' AND t.state = 'pending') "
    "AS points_pending "
    "FROM p JOIN transfers t ON t.flow_id = p.flow_id AND t.tenant_id = :t "
    "AND t.kind IN ('cashback', 'points_earned') GROUP BY p.flow_id, p.currency) "
    "SELECT currency, coalesce(sum(pending), 0) AS pending, "
    "coalesce(sum(available), 0) AS available, "
    "coalesce(sum(greatest(coalesce(original, 0) - coalesce(pending, 0) "
    "- coalesce(available, 0), 0)), 0) AS reversed, "
    "coalesce(sum(points), 0) AS points, coalesce(sum(points_pending), 0) AS points_pending "
    "FROM f GROUP BY currency"
)

_LIFETIME = (
    "WITH u AS (SELECT currency, user_id, sum(amount) AS value, count(*) AS n FROM purchases "
    "WHERE tenant_id = :t{currency} GROUP BY currency, user_id), "
    "r AS (SELECT currency, user_id, value, n, "
    "row_number() OVER (PARTITION BY currency ORDER BY value DESC, user_id) AS rank, "
    "count(*) OVER (PARTITION BY currency) AS users, "
    "sum(value) OVER (PARTITION BY currency) AS total FROM u) "
    "SELECT currency, user_id, value, n, users, total FROM r WHERE rank <= :top "
    "ORDER BY currency, rank"
)


@dataclass
class Bucket:
    count: int = 0
    value: int = 0


def _buckets(names: tuple[str, ...]) -> dict[str, Bucket]:
    return {name: Bucket() for name in names}


@dataclass
class CurrencyFigures:
    """One currency's figures for the period, in minor units (points in PTS)."""

    currency: str
    purchases: int = 0
    attributed: int = 0
    order_value: int = 0
    refunded: int = 0
    cashback_pending: int = 0
    cashback_available: int = 0
    cashback_reversed: int = 0
    points_earned: int = 0
    points_pending: int = 0
    by_platform: dict[str, Bucket] = field(default_factory=lambda: _buckets(PLATFORMS))
    by_band: dict[str, Bucket] = field(default_factory=lambda: _buckets(BANDS))

    @property
    def average_order_value(self) -> int:
        if not self.purchases:
            return 0
        return round_half_up(Decimal(self.order_value) / Decimal(self.purchases))


@dataclass
class LifetimeUser:
    user_id: str
    value: int
    purchases: int


@dataclass
class LifetimeValue:
    """All-time order value per purchasing user in one currency."""

    currency: str
    users: int
    total: int
    top: list[LifetimeUser]

    @property
    def average(self) -> int:
        return round_half_up(Decimal(self.total) / Decimal(self.users)) if self.users else 0


@dataclass
class AnalyticsReport:
    start: datetime
    end: datetime
    currency: str | None
    interactions: int
    interacting_users: int
    currencies: list[CurrencyFigures]
    lifetime: list[LifetimeValue]

    @property
    def purchases(self) -> int:
        return sum(c.purchases for c in self.currencies)

    @property
    def attributed(self) -> int:
        return sum(c.attributed for c in self.currencies)

    @property
    def conversion_rate(self) -> Decimal:
        if not self.interacting_users:
            return Decimal(0).quantize(RATE_PLACES)
        rate = Decimal(self.attributed) / Decimal(self.interacting_users)
        return rate.quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


class AnalyticsRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def interactions(self, tenant_id: str, start: datetime, end: datetime
                           ) -> tuple[int, int]:
        """(interactions, unique interacting users) in the period."""
        row = (await self.session.execute(
            text(_INTERACTIONS), {"t": tenant_id, "start": start, "end": end})).one()
        return int(row.n), int(row.users)

    async def currency_figures(self, tenant_id: str, start: datetime, end: datetime,
                               currency: str | None = None) -> list[CurrencyFigures]:
        """Per currency (sorted): purchases, order value, refunds, platforms, attribution bands,
        cashback and points of the period's purchases."""
        params = self._params(tenant_id, currency, start=start, end=end)
        cur = _CURRENCY if currency else ""
        figures: dict[str, CurrencyFigures] = {}
        for r in await self.session.execute(text(_PURCHASES.format(currency=cur)), params):
            c = figures.setdefault(r.currency, CurrencyFigures(r.currency))
            n, value = int(r.n), int(r.value)
            c.purchases += n
            c.attributed += int(r.attributed)
            c.order_value += value
            c.refunded += int(r.refunded)
            for bucket in (c.by_platform.setdefault(r.platform, Bucket()),
                           c.by_band.setdefault(r.band, Bucket())):
                bucket.count += n
                bucket.value += value
        for r in await self.session.execute(text(_LEDGER.format(currency=cur)), params):
            c = figures.setdefault(r.currency, CurrencyFigures(r.currency))
            c.cashback_pending = int(r.pending)
            c.cashback_available = int(r.available)
            c.cashback_reversed = int(r.reversed)
            c.points_earned = int(r.points)
            c.points_pending = int(r.points_pending)
        return [figures[k] for k in sorted(figures)]

    async def lifetime_value(self, tenant_id: str, currency: str | None = None,
                             top: int = TOP_USERS) -> list[LifetimeValue]:
        """All-time value per purchasing user, per currency (sorted), with the top users."""
        params = self._params(tenant_id, currency, top=top)
        sql = _LIFETIME.format(currency=_CURRENCY if currency else "")
        out: dict[str, LifetimeValue] = {}
        for r in await self.session.execute(text(sql), params):
            ltv = out.setdefault(r.currency, LifetimeValue(r.currency, int(r.users),
                                                           int(r.total), []))
            ltv.top.append(LifetimeUser(r.user_id, int(r.value), int(r.n)))
        return [out[k] for k in sorted(out)]

    async def report(self, tenant_id: str, start: datetime, end: datetime,
                     currency: str | None = None) -> AnalyticsReport:
        """Every figure. Run it in one REPEATABLE READ transaction for a consistent snapshot."""
        interactions, users = await self.interactions(tenant_id, start, end)
        return AnalyticsReport(
            start=start, end=end, currency=currency, interactions=interactions,
            interacting_users=users,
            currencies=await self.currency_figures(tenant_id, start, end, currency),
            lifetime=await self.lifetime_value(tenant_id, currency),
        )

    @staticmethod
    def _params(tenant_id: str, currency: str | None, **extra: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"t": tenant_id, **extra}
        if currency:
            params["cur"] = currency
        return params
