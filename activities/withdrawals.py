"""Withdrawal activities: hold the funds under the daily limit, then post or void the hold."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.refusals import ledger_refused, refused
from contracts.errors import ErrorCode
from contracts.ledger import AccountRef, TransferRequest
from contracts.money import Money, format_amount
from contracts.withdrawal import WITHDRAWAL_HOLD, WITHDRAWAL_SETTLE, WithdrawalStep
from db.ledger import LedgerError, LedgerRepository
from db.outbox import emit
from db.withdrawals import WithdrawalRepository

# Statuses whose funds are not (or no longer) held: they do not count toward the daily limit.
RELEASED = ("rejected", "expired", "payout_failed", "refused")


class WithdrawalActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @activity.defn(name=WITHDRAWAL_HOLD)
    async def hold(self, step: WithdrawalStep) -> None:
        """Hold the amount (user wallet → payouts in transit, pending) if the daily limit and
        the balance allow it."""
        cur = step.amount.currency
        wallet = AccountRef("user_wallet", step.user_id, cur)
        transit = AccountRef("payouts_in_transit", "tenant", cur)
        async with self.sessions.begin() as session:
            ledger = LedgerRepository(session)
            await ledger.lock(step.tenant_id, [wallet, transit])  # serialises this user's holds
            if step.daily_max is not None:
                await self._check_daily_limit(session, step, step.daily_max)
            try:
                await ledger.post(step.tenant_id, step.flow_id, [TransferRequest(
                    f"{step.flow_id}:hold", wallet, transit, step.amount.amount, cur,
                    "withdrawal")], pending=True)
            except LedgerError as e:
                raise ledger_refused(e) from e
            await self._status(session, step)

    @staticmethod
    async def _check_daily_limit(session: AsyncSession, step: WithdrawalStep,
                                 daily_max: int) -> None:
        cur = step.amount.currency
        today = await WithdrawalRepository(session).withdrawn_today(
            step.tenant_id, step.user_id, cur, step.flow_id, [*RELEASED, "requested"])
        if today + step.amount.amount > daily_max:
            raise refused(ErrorCode.OVER_LIMIT,
                          f"the daily limit is {Money(daily_max, cur)}; "
                          f"{Money(today, cur)} already withdrawn today")

    @activity.defn(name=WITHDRAWAL_SETTLE)
    async def settle(self, step: WithdrawalStep) -> None:
        async with self.sessions.begin() as session:
            if step.action in ("post", "void"):
                await LedgerRepository(session).resolve(
                    step.tenant_id, f"{step.flow_id}:hold",
                    "posted" if step.action == "post" else "voided")
            await self._status(session, step)

    @staticmethod
    async def _status(session: AsyncSession, step: WithdrawalStep) -> None:
        await WithdrawalRepository(session).record_status(step.flow_id, step.status, step.error,
                                                          step.payout_id)
        await emit(session, step.tenant_id, f"withdrawal.{step.status}:{step.flow_id}",
                   f"withdrawal.{step.status}", {"flow_id": step.flow_id,
                                                 "user_id": step.user_id,
                                                 "amount": format_amount(step.amount.amount,
                                                                         step.amount.currency),
                                                 "currency": step.amount.currency})
