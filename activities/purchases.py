"""Purchase-credit activities: attribution and cashback evaluation, and each ledger step of a
purchase together with its state, one database transaction each (safe to retry: every ledger
write carries a key derived from the flow id)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.campaigns import emit
from contracts.ledger import AccountRef, TransferRequest
from contracts.money import POINTS, format_amount
from contracts.purchase import (
    PURCHASE_APPLY,
    PURCHASE_EVALUATE,
    PurchaseEvaluation,
    PurchaseInput,
    PurchaseStep,
)
from contracts.rewards import RewardsPolicy, cashback_for, points_for
from db.ledger import LedgerError, LedgerRepository

SESSION_WINDOW = timedelta(minutes=60)
PROXIMITY_WINDOW = timedelta(hours=24)
EMAIL_WINDOW = timedelta(days=7)
TWO_PLACES = Decimal("0.01")


def attribute(purchase_at: datetime, last_seen: datetime | None) -> tuple[str, Decimal]:
    """Seed 001's attribution: the closer the last interaction of the same user (or email, or
    widget session) before the purchase, the higher the confidence, decaying linearly inside
    each band: ≤ 60 min 0.95→0.90 (session_match), ≤ 24 h 0.90→0.70 (time_proximity),
    ≤ 7 days 0.65→0.50 (email_match), otherwise 0 (no_match)."""
    if last_seen is None or last_seen > purchase_at:
        return "no_match", Decimal("0.00")
    age = purchase_at - last_seen

    def band(hi: str, lo: str, start: timedelta, end: timedelta) -> Decimal:
        span = Decimal((end - start).total_seconds())
        into = Decimal(max(age - start, timedelta()).total_seconds())
        value = Decimal(hi) - (Decimal(hi) - Decimal(lo)) * into / span
        return value.quantize(TWO_PLACES, rounding=ROUND_HALF_UP)

    if age <= SESSION_WINDOW:
        return "session_match", band("0.95", "0.90", timedelta(), SESSION_WINDOW)
    if age <= PROXIMITY_WINDOW:
        return "time_proximity", band("0.90", "0.70", SESSION_WINDOW, PROXIMITY_WINDOW)
    if age <= EMAIL_WINDOW:
        return "email_match", band("0.65", "0.50", PROXIMITY_WINDOW, EMAIL_WINDOW)
    return "no_match", Decimal("0.00")


def rewards_policy(settings: dict[str, Any]) -> RewardsPolicy:
    policy = RewardsPolicy()
    for name, value in (settings or {}).get("rewards", {}).items():
        if hasattr(policy, name):
            setattr(policy, name, value)
    return policy


class PurchaseActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @activity.defn(name=PURCHASE_EVALUATE)
    async def evaluate(self, inp: PurchaseInput) -> PurchaseEvaluation:
        async with self.sessions.begin() as session:
            settings = (await session.execute(
                text("SELECT settings FROM tenants WHERE id = :t"), {"t": inp.tenant_id}
            )).scalar_one()
            policy = rewards_policy(settings)
            purchase_at = datetime.fromisoformat(inp.occurred_at)
            last_seen = (await session.execute(text(
                "SELECT max(occurred_at) FROM widget_interactions WHERE tenant_id = :t "
                "AND occurred_at <= :at AND occurred_at >= :since AND (user_id = :u "
                "OR (CAST(:e AS text) IS NOT NULL AND lower(email) = lower(:e)) "
                "OR (CAST(:s AS text) IS NOT NULL AND session_id = :s))"),
                {"t": inp.tenant_id, "at": purchase_at, "since": purchase_at - EMAIL_WINDOW,
                 "u": inp.user_id, "e": inp.email, "s": inp.session_id})).scalar_one()
            method, confidence = attribute(purchase_at, last_seen)
            lifetime_points = (await session.execute(text(
                "SELECT coalesce(sum(t.amount), 0) FROM transfers t JOIN accounts a "
                "ON a.id = t.credit_account_id WHERE a.tenant_id = :t AND a.kind = 'user_points' "
                "AND a.owner_id = :u AND t.state = 'posted'"),
                {"t": inp.tenant_id, "u": inp.user_id})).scalar_one()
            tier = policy.tier_for(int(lifetime_points))
            rate = Decimal(policy.cashback_rate) + Decimal(policy.tier_bonus.get(tier, "0"))
            eligible = confidence >= Decimal(policy.min_confidence)
            cashback = cashback_for(inp.amount.amount, str(rate)) if eligible else 0
            points = (points_for(inp.amount.amount, inp.amount.currency, policy.points_per_unit)
                      if eligible else 0)
            await session.execute(text(
                "UPDATE purchases SET attribution_method = :m, confidence = :c, tier = :tier, "
                "cashback = :cb, points = :p, state = 'evaluated', updated_at = now() "
                "WHERE tenant_id = :t AND store_order_id = :o"),
                {"m": method, "c": confidence, "tier": tier, "cb": cashback, "p": points,
                 "t": inp.tenant_id, "o": inp.store_order_id})
        return PurchaseEvaluation(
            method=method, confidence=str(confidence), tier=tier, rate=str(rate),
            cashback=cashback, points=points, points_per_unit=policy.points_per_unit,
            return_window_seconds=int(policy.return_window_seconds), eligible=eligible)

    @activity.defn(name=PURCHASE_APPLY)
    async def apply_step(self, step: PurchaseStep) -> None:
        funding = AccountRef("cashback_funding", "tenant", step.currency)
        wallet = AccountRef("user_wallet", step.user_id, step.currency)
        issuance = AccountRef("points_issuance", "tenant", POINTS)
        user_points = AccountRef("user_points", step.user_id, POINTS)
        meta = {"store_order_id": step.store_order_id}
        try:
            async with self.sessions.begin() as session:
                ledger = LedgerRepository(session)
                refs = [funding, wallet] + ([issuance, user_points] if step.points else [])
                await ledger.lock(step.tenant_id, refs)
                if step.void_key:
                    await ledger.resolve(step.tenant_id, step.void_key, "voided")
                if step.post_key:
                    await ledger.resolve(step.tenant_id, step.post_key, "posted")
                if step.hold_key and step.hold_amount > 0:
                    await ledger.post(step.tenant_id, step.flow_id, [TransferRequest(
                        step.hold_key, funding, wallet, step.hold_amount, step.currency,
                        "cashback", meta)], pending=True)
                if step.points > 0:
                    await ledger.post(step.tenant_id, step.flow_id, [TransferRequest(
                        f"{step.flow_id}:points", issuance, user_points, step.points, POINTS,
                        "points_earned", meta)])
                await session.execute(text(
                    "UPDATE purchases SET state = :s, refunded = :r, updated_at = now(), "
                    "cashback = CASE WHEN :s = 'reversed' THEN 0 WHEN CAST(:hk AS text) IS NULL "
                    "THEN cashback ELSE :cb END, "
                    "release_at = coalesce(CAST(:rel AS timestamptz), release_at) "
                    "WHERE tenant_id = :t AND store_order_id = :o"),
                    {"s": step.state, "r": step.refunded, "hk": step.hold_key,
                     "cb": step.hold_amount,
                     "rel": datetime.fromisoformat(step.release_at) if step.release_at else None,
                     "t": step.tenant_id, "o": step.store_order_id})
                if step.state in ("pending", "available", "reversed"):
                    await emit(session, step.tenant_id,
                               f"cashback.{step.state}:{step.flow_id}:{step.hold_key or ''}",
                               f"cashback.{step.state}",
                               {"store_order_id": step.store_order_id, "user_id": step.user_id,
                                "currency": step.currency,
                                "amount": format_amount(step.hold_amount, step.currency)})
        except LedgerError as e:
            raise ApplicationError(str(e), type=e.code, non_retryable=True) from e
