"""Refund activities, one database transaction each: reserve refund capacity on the order (the
database keeps the sum of refunds within what was paid), book or release it, and claw back the
order's cashback in proportion."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.campaigns import emit
from contracts.ledger import AccountRef, TransferRequest
from contracts.money import POINTS, format_amount, round_half_up
from contracts.refund import (
    REFUND_CLAWBACK,
    REFUND_RESERVE,
    REFUND_SETTLE,
    ClawbackRequest,
    ClawbackResult,
    RefundPlan,
    RefundReservation,
    RefundSettlement,
)
from db.ledger import InsufficientFunds, LedgerRepository

REFUNDABLE = ("paid", "partially_refunded")
FINAL = ("refunded", "rejected", "failed", "expired", "refused")


class RefundActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @activity.defn(name=REFUND_RESERVE)
    async def reserve(self, req: RefundReservation) -> RefundPlan:
        async with self.sessions.begin() as session:
            order = (await session.execute(text(
                "SELECT * FROM orders WHERE tenant_id = :t AND order_id = :o FOR UPDATE"),
                {"t": req.tenant_id, "o": req.order_id})).one()._mapping
            refund = (await session.execute(text(
                "SELECT status, wallet_part, card_part FROM refunds WHERE flow_id = :f"),
                {"f": req.flow_id})).one()._mapping
            plan = RefundPlan(payment_id=order["payment_id"])
            if refund["status"] != "requested":  # a retry: the reservation already happened
                plan.wallet, plan.card = refund["wallet_part"], refund["card_part"]
                return plan
            if order["status"] not in REFUNDABLE:
                raise ApplicationError(f"the order is {order['status']}", type="not_refundable",
                                       non_retryable=True)
            left = order["amount"] - order["reserved_refunds"]
            if req.amount > left:
                raise ApplicationError(
                    f"refund_exceeds_paid: only {left} of {order['amount']} can still be refunded",
                    type="refund_exceeds_paid", non_retryable=True)
            if req.destination == "original":
                plan.card = min(req.amount, order["card_amount"] - order["card_refunded"])
            plan.wallet = req.amount - plan.card
            await session.execute(text(
                "UPDATE orders SET reserved_refunds = reserved_refunds + :a, "
                "card_refunded = card_refunded + :c, updated_at = now() "
                "WHERE tenant_id = :t AND order_id = :o"),
                {"a": req.amount, "c": plan.card, "t": req.tenant_id, "o": req.order_id})
            await session.execute(text(
                "UPDATE refunds SET status = 'reserved', wallet_part = :w, card_part = :c, "
                "updated_at = now() WHERE flow_id = :f"),
                {"w": plan.wallet, "c": plan.card, "f": req.flow_id})
        return plan

    @activity.defn(name=REFUND_SETTLE)
    async def settle(self, s: RefundSettlement) -> str:
        async with self.sessions.begin() as session:
            order = (await session.execute(text(
                "SELECT * FROM orders WHERE tenant_id = :t AND order_id = :o FOR UPDATE"),
                {"t": s.tenant_id, "o": s.order_id})).one()._mapping
            current = (await session.execute(text(
                "SELECT status FROM refunds WHERE flow_id = :f"), {"f": s.flow_id})).scalar_one()
            if current in FINAL:
                return current  # a retry of a settlement that committed
            status = s.status or s.outcome
            if s.outcome == "refunded":
                ledger = LedgerRepository(session)
                revenue = AccountRef("merchant_revenue", "tenant", s.currency)
                transfers = []
                if s.wallet:
                    kind = "user_points" if s.currency == POINTS else "user_wallet"
                    transfers.append(TransferRequest(
                        f"{s.flow_id}:to-wallet", revenue, AccountRef(kind, s.user_id, s.currency),
                        s.wallet, s.currency, "refund", {"order_id": s.order_id}))
                if s.card:
                    transfers.append(TransferRequest(
                        f"{s.flow_id}:to-card", revenue,
                        AccountRef("gateway_clearing", s.gateway, s.currency), s.card, s.currency,
                        "refund", {"order_id": s.order_id}))
                await ledger.post(s.tenant_id, s.flow_id, transfers)
                refunded = order["refunded"] + s.wallet + s.card
                await session.execute(text(
                    "UPDATE orders SET refunded = :r, status = :st, updated_at = now() "
                    "WHERE tenant_id = :t AND order_id = :o"),
                    {"r": refunded, "st": "refunded" if refunded == order["amount"]
                     else "partially_refunded", "t": s.tenant_id, "o": s.order_id})
                await emit(session, s.tenant_id, f"refund.completed:{s.flow_id}",
                           "refund.completed", {"flow_id": s.flow_id, "order_id": s.order_id,
                                                "currency": s.currency,
                                                "amount": format_amount(s.wallet + s.card,
                                                                        s.currency)})
            elif s.outcome == "released":
                await session.execute(text(
                    "UPDATE orders SET reserved_refunds = reserved_refunds - :a, "
                    "card_refunded = card_refunded - :c, updated_at = now() "
                    "WHERE tenant_id = :t AND order_id = :o"),
                    {"a": s.reserved, "c": s.card, "t": s.tenant_id, "o": s.order_id})
            await session.execute(text(
                "UPDATE refunds SET status = :st, error = :e, wallet_part = :w, card_part = :c, "
                "updated_at = now() WHERE flow_id = :f"),
                {"st": status, "e": s.error, "w": s.wallet, "c": s.card, "f": s.flow_id})
        return status

    @activity.defn(name=REFUND_CLAWBACK)
    async def clawback(self, req: ClawbackRequest) -> ClawbackResult:
        """The order's cashback, in proportion to the refund: a pending one is reduced by its
        own flow (signalled by the caller), an available one is clawed back from the wallet."""
        async with self.sessions.begin() as session:
            purchase = (await session.execute(text(
                "SELECT flow_id, state, cashback, currency, user_id FROM purchases "
                "WHERE tenant_id = :t AND store_order_id = :o"),
                {"t": req.tenant_id, "o": req.order_id})).first()
            if purchase is None or purchase.cashback == 0 or purchase.state in (
                    "reversed", "not_eligible"):
                return ClawbackResult("none")
            if purchase.state != "available":
                return ClawbackResult("signal_purchase", purchase.flow_id)
            order_amount = (await session.execute(text(
                "SELECT amount FROM orders WHERE tenant_id = :t AND order_id = :o"),
                {"t": req.tenant_id, "o": req.order_id})).scalar_one()
            amount = round_half_up(Decimal(purchase.cashback) * req.refund.amount / order_amount)
            if amount == 0:
                return ClawbackResult("none")
            try:
                await LedgerRepository(session).post(req.tenant_id, req.flow_id, [TransferRequest(
                    f"{req.flow_id}:clawback",
                    AccountRef("user_wallet", purchase.user_id, purchase.currency),
                    AccountRef("cashback_funding", "tenant", purchase.currency), amount,
                    purchase.currency, "cashback_clawback", {"order_id": req.order_id})])
            except InsufficientFunds:
                return ClawbackResult("insufficient_funds", purchase.flow_id, amount)
        return ClawbackResult("clawed_back", purchase.flow_id, amount)
