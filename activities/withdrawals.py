"""Withdrawal activities: hold the funds under the daily limit, then post or void the hold."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.campaigns import emit
from contracts.ledger import AccountRef, TransferRequest
from contracts.money import format_amount
from contracts.withdrawal import WITHDRAWAL_HOLD, WITHDRAWAL_SETTLE, WithdrawalStep
from db.ledger import InsufficientFunds, LedgerRepository

RELEASED = ("rejected", "expired", "payout_failed", "refused")


class WithdrawalActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @activity.defn(name=WITHDRAWAL_HOLD)
    async def hold(self, step: WithdrawalStep) -> None:
        cur = step.amount.currency
        wallet = AccountRef("user_wallet", step.user_id, cur)
        transit = AccountRef("payouts_in_transit", "tenant", cur)
        async with self.sessions.begin() as session:
            ledger = LedgerRepository(session)
            await ledger.lock(step.tenant_id, [wallet, transit])  # serialises this user's holds
            if step.daily_max is not None:
                today = (await session.execute(text(
                    "SELECT coalesce(sum(amount), 0) FROM withdrawals WHERE tenant_id = :t "
                    "AND user_id = :u AND currency = :c AND flow_id <> :f "
                    "AND created_at >= date_trunc('day', now()) AND status <> ALL(:released)"),
                    {"t": step.tenant_id, "u": step.user_id, "c": cur, "f": step.flow_id,
                     "released": list(RELEASED) + ["requested"]})).scalar_one()
                if today + step.amount.amount > step.daily_max:
                    raise ApplicationError(
                        f"over_limit: the daily limit is {format_amount(step.daily_max, cur)} "
                        f"{cur}; {format_amount(int(today), cur)} already withdrawn today",
                        type="over_limit", non_retryable=True)
            try:
                await ledger.post(step.tenant_id, step.flow_id, [TransferRequest(
                    f"{step.flow_id}:hold", wallet, transit, step.amount.amount, cur,
                    "withdrawal")], pending=True)
            except InsufficientFunds as e:
                raise ApplicationError(f"insufficient_funds: {e}", type="insufficient_funds",
                                       non_retryable=True) from e
            await self._status(session, step)

    @activity.defn(name=WITHDRAWAL_SETTLE)
    async def settle(self, step: WithdrawalStep) -> None:
        async with self.sessions.begin() as session:
            if step.action in ("post", "void"):
                await LedgerRepository(session).resolve(
                    step.tenant_id, f"{step.flow_id}:hold",
                    "posted" if step.action == "post" else "voided")
            await self._status(session, step)

    async def _status(self, session: AsyncSession, step: WithdrawalStep) -> None:
        await session.execute(text(
            "UPDATE withdrawals SET status = :s, error = :e, payout_id = coalesce(:p, payout_id),"
            " updated_at = now() WHERE flow_id = :f"),
            {"s": step.status, "e": step.error, "p": step.payout_id, "f": step.flow_id})
        await emit(session, step.tenant_id, f"withdrawal.{step.status}:{step.flow_id}",
                   f"withdrawal.{step.status}", {"flow_id": step.flow_id,
                                                 "user_id": step.user_id,
                                                 "amount": format_amount(step.amount.amount,
                                                                         step.amount.currency),
                                                 "currency": step.amount.currency})
