"""Purchases as credited: attribution, cashback and its state (the ``purchases`` table; the
rows are first recorded through db/stores.py), and the widget interactions that attribute
them. Nothing here commits: the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass
class Evaluation:
    """How a purchase was attributed and what it earns."""

    method: str
    confidence: Decimal
    tier: str
    cashback: int
    points: int


class PurchaseRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def last_interaction(self, tenant_id: str, at: datetime, since: datetime,
                               user_id: str, email: str | None,
                               session_id: str | None) -> datetime | None:
        """The latest widget interaction in [since, at] of the same user, email or session."""
        value = (await self.session.execute(text(
            "SELECT max(occurred_at) FROM widget_interactions WHERE tenant_id = :t "
            "AND occurred_at <= :at AND occurred_at >= :since AND (user_id = :u "
            "OR (CAST(:e AS text) IS NOT NULL AND lower(email) = lower(:e)) "
            "OR (CAST(:s AS text) IS NOT NULL AND session_id = :s))"),
            {"t": tenant_id, "at": at, "since": since, "u": user_id, "e": email,
             "s": session_id})).scalar_one()
        return value if isinstance(value, datetime) else None

    async def record_evaluation(self, tenant_id: str, store_order_id: str,
                                e: Evaluation) -> None:
        await self.session.execute(text(
            "UPDATE purchases SET attribution_method = :m, confidence = :c, tier = :tier, "
            "cashback = :cb, points = :p, state = 'evaluated', updated_at = now() "
            "WHERE tenant_id = :t AND store_order_id = :o"),
            {"m": e.method, "c": e.confidence, "tier": e.tier, "cb": e.cashback, "p": e.points,
             "t": tenant_id, "o": store_order_id})

    async def record_state(self, tenant_id: str, store_order_id: str, state: str, refunded: int,
                           hold_key: str | None, cashback: int,
                           release_at: datetime | None) -> None:
        """The purchase's new state; its cashback becomes ``cashback`` when a new hold was
        made (``hold_key``), 0 when reversed; ``release_at`` when given."""
        await self.session.execute(text(
            "UPDATE purchases SET state = :s, refunded = :r, updated_at = now(), "
            "cashback = CASE WHEN :s = 'reversed' THEN 0 WHEN CAST(:hk AS text) IS NULL "
            "THEN cashback ELSE :cb END, "
            "release_at = coalesce(CAST(:rel AS timestamptz), release_at) "
            "WHERE tenant_id = :t AND store_order_id = :o"),
            {"s": state, "r": refunded, "hk": hold_key, "cb": cashback, "rel": release_at,
             "t": tenant_id, "o": store_order_id})

    async def cashback_of_order(self, tenant_id: str, store_order_id: str) -> Any | None:
        """The purchase with this store order id (flow_id, state, cashback, currency, user_id,
        amount, refunded), if any, locked until the transaction ends (clawbacks serialise)."""
        return (await self.session.execute(text(
            "SELECT flow_id, state, cashback, currency, user_id, amount, refunded FROM purchases "
            "WHERE tenant_id = :t AND store_order_id = :o FOR UPDATE"),
            {"t": tenant_id, "o": store_order_id})).first()

    async def record_refunded(self, tenant_id: str, store_order_id: str, refunded: int) -> None:
        """The order's refunded total, once its purchase's flow no longer counts refunds itself
        (never down, never above the purchase's amount)."""
        await self.session.execute(text(
            "UPDATE purchases SET refunded = least(amount, greatest(refunded, :r)), "
            "updated_at = now() WHERE tenant_id = :t AND store_order_id = :o"),
            {"r": refunded, "t": tenant_id, "o": store_order_id})
