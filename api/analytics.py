"""Tenant analytics (admin): interactions, purchases, conversion, order value, cashback, points,
revenue by platform and attribution band, and customer lifetime value.

The figures and their definitions are in db/analytics.py. Money is decimal strings in the
currency's minor unit, grouped per currency (never summed across currencies).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query

from api.deps import AdminPrincipal, DbSession
from api.errors import ProblemError
from contracts.errors import ErrorCode as E
from contracts.money import CURRENCY_EXPONENTS, POINTS, format_amount
from db.analytics import AnalyticsReport, AnalyticsRepository, Bucket, CurrencyFigures

router = APIRouter(tags=["analytics"])

DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=366)


def _instant(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ProblemError(E.INVALID_PERIOD,
                           f"{name!r} is not an ISO-8601 date-time: {value[:40]!r}") from None
    # A date-time without an offset is UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_period(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The half-open period [from, to): `to` defaults to now, `from` to 30 days before `to`.
    Refuses unparseable, empty, inverted and longer-than-366-days periods (422)."""
    try:
        to = _instant(end, "to") if end is not None else now.astimezone(UTC)
        frm = _instant(start, "from") if start is not None else to - DEFAULT_PERIOD
    except OverflowError:
        raise ProblemError(E.INVALID_PERIOD, "the period is out of range") from None
    if frm >= to:
        raise ProblemError(E.INVALID_PERIOD, "'from' must be before 'to'")
    if to - frm > MAX_PERIOD:
        raise ProblemError(E.INVALID_PERIOD, "the period may span at most 366 days")
    return frm, to


def parse_currency(currency: str | None) -> str | None:
    if currency is None:
        return None
    code = currency.strip().upper()
    if code not in CURRENCY_EXPONENTS or code == POINTS:
        raise ProblemError(E.INVALID_CURRENCY, f"unknown currency {currency[:10]!r}")
    return code


def _buckets(buckets: dict[str, Bucket], currency: str) -> dict[str, dict[str, Any]]:
    return {name: {"order_value": format_amount(b.value, currency), "count": b.count}
            for name, b in buckets.items()}


def _currency(c: CurrencyFigures) -> dict[str, Any]:
    fmt = lambda v: format_amount(v, c.currency)  # noqa: E731
    return {
        "currency": c.currency,
        "purchases": c.purchases,
        "order_value": fmt(c.order_value),
        "average_order_value": fmt(c.average_order_value),
        "refunded": fmt(c.refunded),
        "cashback": {"pending": fmt(c.cashback_pending), "available": fmt(c.cashback_available),
                     "reversed": fmt(c.cashback_reversed)},
        "points_earned": format_amount(c.points_earned, POINTS),
        "points_pending": format_amount(c.points_pending, POINTS),
        "by_platform": _buckets(c.by_platform, c.currency),
        "by_attribution": _buckets(c.by_band, c.currency),
    }


def render(report: AnalyticsReport) -> dict[str, Any]:
    return {
        "period": {"from": report.start.isoformat(), "to": report.end.isoformat()},
        "currency": report.currency,
        "interactions": {"count": report.interactions,
                         "unique_users": report.interacting_users},
        "purchases": {"count": report.purchases, "attributed": report.attributed},
        "conversion_rate": str(report.conversion_rate),
        "currencies": [_currency(c) for c in report.currencies],
        "lifetime_value": [{
            "currency": ltv.currency,
            "purchasing_users": ltv.users,
            "total_order_value": format_amount(ltv.total, ltv.currency),
            "average_per_user": format_amount(ltv.average, ltv.currency),
            "top_users": [{"user_id": u.user_id,
                           "order_value": format_amount(u.value, ltv.currency),
                           "purchases": u.purchases} for u in ltv.top],
        } for ltv in report.lifetime],
    }


@router.get("/v1/analytics", summary="Tenant analytics for a period (admin)")
async def get_analytics(
    principal: AdminPrincipal,
    session: DbSession,
    start: str | None = Query(None, alias="from",
                              description="ISO-8601 start, inclusive (default: `to` - 30 days)"),
    end: str | None = Query(None, alias="to",
                            description="ISO-8601 end, exclusive (default: now)"),
    currency: str | None = Query(None, description="only this currency (default: all)"),
) -> dict[str, Any]:
    """Period figures are by `occurred_at` in [from, to); lifetime value is over all time.
    Offset-less date-times are UTC. See db/analytics.py for every definition."""
    frm, to = parse_period(start, end, datetime.now(UTC))
    code = parse_currency(currency)
    # One snapshot for every query of the report (read-only: its commit writes nothing).
    await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    report = await AnalyticsRepository(session).report(principal.tenant_id, frm, to, code)
    return render(report)
