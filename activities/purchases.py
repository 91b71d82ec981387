"""Purchase-credit activities: attribution and cashback evaluation, and each ledger step of a
purchase together with its state, one database transaction each (safe to retry: every ledger
write carries a key derived from the flow id)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.refusals import ledger_refused
from contracts.ledger import AccountRef, TransferRequest
from contracts.money import POINTS, format_amount
from contracts.purchase import (
    PURCHASE_APPLY,
    PURCHASE_EVALUATE,
    PurchaseEvaluation,
    PurchaseInput,
    PurchaseStep,
)
from contracts.rewards import cashback_for, points_for, rewards_policy
from db.ledger import LedgerError, LedgerRepository
from db.outbox import emit
from db.purchases import Evaluation, PurchaseRepository
from db.tenants import TenantRepository

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


class PurchaseActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @activity.defn(name=PURCHASE_EVALUATE)
    async def evaluate(self, inp: PurchaseInput) -> PurchaseEvaluation:
        """Attribute the purchase, find the user's tier, and what it earns under the tenant's
        policy; recorded on the purchase."""
        purchase_at = datetime.fromisoformat(inp.occurred_at)
        async with self.sessions.begin() as session:
            policy = rewards_policy(await TenantRepository(session).settings(inp.tenant_id))
            purchases = PurchaseRepository(session)
            last_seen = await purchases.last_interaction(
                inp.tenant_id, purchase_at, purchase_at - EMAIL_WINDOW, inp.user_id, inp.email,
                inp.session_id)
            method, confidence = attribute(purchase_at, last_seen)
            lifetime_points = await LedgerRepository(session).lifetime_points(inp.tenant_id,
                                                                              inp.user_id)
            tier = policy.tier_for(lifetime_points)
            rate = Decimal(policy.cashback_rate) + Decimal(policy.tier_bonus.get(tier, "0"))
            eligible = confidence >= Decimal(policy.min_confidence)
            cashback = cashback_for(inp.amount.amount, str(rate)) if eligible else 0
            points = (points_for(inp.amount.amount, inp.amount.currency, policy.points_per_unit)
                      if eligible else 0)
            await purchases.record_evaluation(inp.tenant_id, inp.store_order_id, Evaluation(
                method, confidence, tier, cashback, points))
        return PurchaseEvaluation(
            method=method, confidence=str(confidence), tier=tier, rate=str(rate),
            cashback=cashback, points=points, points_per_unit=policy.points_per_unit,
            return_window_seconds=int(policy.return_window_seconds), eligible=eligible)

    @activity.defn(name=PURCHASE_APPLY)
    async def apply_step(self, step: PurchaseStep) -> None:
        """One step of the purchase's cashback (void / post / new hold, points), its new state
        and its event, in one transaction."""
        try:
            async with self.sessions.begin() as session:
                ledger = LedgerRepository(session)
                await _move(ledger, step)
                await PurchaseRepository(session).record_state(
                    step.tenant_id, step.store_order_id, step.state, step.refunded,
                    step.hold_key, step.hold_amount,
                    datetime.fromisoformat(step.release_at) if step.release_at else None)
                if step.state in ("pending", "available", "reversed"):
                    amount = await _announced(ledger, step)
                    await emit(session, step.tenant_id,
                               f"cashback.{step.state}:{step.flow_id}:{step.hold_key or ''}",
                               f"cashback.{step.state}",
                               {"flow_id": step.flow_id, "store_order_id": step.store_order_id,
                                "user_id": step.user_id, "currency": step.currency,
                                "amount": format_amount(amount, step.currency)})
        except LedgerError as e:
            raise ledger_refused(e) from e


async def _announced(ledger: LedgerRepository, step: PurchaseStep) -> int:
    """What the step's event announces, read from the ledger: the hold made available, the hold
    reversed, or the new pending hold."""
    key = {"available": step.post_key, "reversed": step.void_key}.get(step.state)
    if step.state in ("available", "reversed"):
        return await ledger.transfer_amount(step.tenant_id, key) if key else 0
    return step.hold_amount


async def _move(ledger: LedgerRepository, step: PurchaseStep) -> None:
    """The step's ledger writes, its accounts locked up front (ascending id)."""
    funding = AccountRef("cashback_funding", "tenant", step.currency)
    wallet = AccountRef("user_wallet", step.user_id, step.currency)
    issuance = AccountRef("points_issuance", "tenant", POINTS)
    user_points = AccountRef("user_points", step.user_id, POINTS)
    meta = {"store_order_id": step.store_order_id}
    await ledger.lock(step.tenant_id,
                      [funding, wallet] + ([issuance, user_points] if step.points else []))
    if step.void_key:
        await ledger.resolve(step.tenant_id, step.void_key, "voided")
    if step.post_key:
        await ledger.resolve(step.tenant_id, step.post_key, "posted")
    if step.hold_key and step.hold_amount > 0:
        await ledger.post(step.tenant_id, step.flow_id, [TransferRequest(
            step.hold_key, funding, wallet, step.hold_amount, step.currency, "cashback", meta)],
            pending=True)
    if step.points > 0:
        await ledger.post(step.tenant_id, step.flow_id, [TransferRequest(
            f"{step.flow_id}:points", issuance, user_points, step.points, POINTS,
            "points_earned", meta)])
