"""Refund activities, one database transaction each: reserve refund capacity on the order (the
database keeps the sum of refunds within what was paid), book or release it, and claw back the
order's cashback in proportion."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.refusals import refused
from contracts.errors import ErrorCode
from contracts.ledger import AccountRef, TransferRequest
from contracts.money import POINTS, Money, format_amount, round_half_up
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
from db.gateway_objects import GatewayObjectKind, GatewayObjectRepository
from db.ledger import InsufficientFunds, LedgerRepository
from db.orders import OrderRepository
from db.outbox import emit
from db.purchases import PurchaseRepository
from db.refunds import RefundRepository

REFUNDABLE = ("paid", "partially_refunded")
FINAL = ("refunded", "rejected", "failed", "expired", "refused")


def _plan(order: dict[str, Any], req: RefundReservation) -> RefundPlan:
    """How the refund splits (card first when it goes to the original method), or the
    refusal: the order is not refundable, or less than asked can still be refunded."""
    if order["status"] not in (*REFUNDABLE, "refunded"):  # fully refunded: 0 is left
        raise refused(ErrorCode.NOT_REFUNDABLE, f"the order is {order['status']}")
    left, cur = order["amount"] - order["reserved_refunds"], order["currency"]
    if req.amount > left:
        raise refused(ErrorCode.REFUND_EXCEEDS_PAID,
                      f"at most {Money(left, cur)} can still be refunded")
    plan = RefundPlan(payment_id=order["payment_id"])
    if req.destination == "original":
        plan.card = min(req.amount, order["card_amount"] - order["card_refunded"])
    plan.wallet = req.amount - plan.card
    return plan


def _refund_transfers(s: RefundSettlement) -> list[TransferRequest]:
    """merchant revenue → the wallet (or points) and → the card's clearing account."""
    revenue = AccountRef("merchant_revenue", "tenant", s.currency)
    transfers = []
    if s.wallet:
        kind = "user_points" if s.currency == POINTS else "user_wallet"
        transfers.append(TransferRequest(
            f"{s.flow_id}:to-wallet", revenue, AccountRef(kind, s.user_id, s.currency),
            s.wallet, s.currency, "refund", {"order_id": s.order_id}))
    if s.card:
        transfers.append(TransferRequest(
            f"{s.flow_id}:to-card", revenue, AccountRef("gateway_clearing", s.gateway, s.currency),
            s.card, s.currency, "refund", {"order_id": s.order_id}))
    return transfers


async def _gateway_of(session: AsyncSession, payment_id: str | None) -> str:
    """The gateway the order's card part was paid through (refunds go back the same way)."""
    if not payment_id:
        return "stripe"
    found = await GatewayObjectRepository(session).gateway_of(GatewayObjectKind.PAYMENT,
                                                              payment_id)
    return found or "stripe"


class RefundActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @activity.defn(name=REFUND_RESERVE)
    async def reserve(self, req: RefundReservation) -> RefundPlan:
        async with self.sessions.begin() as session:
            orders, refunds = OrderRepository(session), RefundRepository(session)
            order = await orders.lock(req.tenant_id, req.order_id)
            refund = await refunds.get(req.flow_id)
            gateway = await _gateway_of(session, order["payment_id"])
            if refund["status"] != "requested":  # a retry: the reservation already happened
                return RefundPlan(payment_id=order["payment_id"], wallet=refund["wallet_part"],
                                  card=refund["card_part"], gateway=gateway)
            plan = _plan(order, req)
            plan.gateway = gateway
            await orders.reserve_refund(req.tenant_id, req.order_id, req.amount, plan.card)
            await refunds.record(req.flow_id, "reserved", plan.wallet, plan.card)
        return plan

    @activity.defn(name=REFUND_SETTLE)
    async def settle(self, s: RefundSettlement) -> str:
        async with self.sessions.begin() as session:
            orders, refunds = OrderRepository(session), RefundRepository(session)
            order = await orders.lock(s.tenant_id, s.order_id)
            current = await refunds.status(s.flow_id)
            if current in FINAL:
                return current  # a retry of a settlement that committed
            status = s.status or s.outcome
            if s.outcome == "refunded":
                await self._book(session, s, order)
            elif s.outcome == "released":
                await orders.release_refund(s.tenant_id, s.order_id, s.reserved, s.card)
            await refunds.record(s.flow_id, status, s.wallet, s.card, s.error)
        return status

    @staticmethod
    async def _book(session: AsyncSession, s: RefundSettlement, order: dict[str, Any]) -> None:
        """Move the money back, count it on the order, announce ``refund.completed``."""
        await LedgerRepository(session).post(s.tenant_id, s.flow_id, _refund_transfers(s))
        refunded = order["refunded"] + s.wallet + s.card
        await OrderRepository(session).record_refunded(
            s.tenant_id, s.order_id, refunded,
            "refunded" if refunded == order["amount"] else "partially_refunded")
        await emit(session, s.tenant_id, f"refund.completed:{s.flow_id}", "refund.completed",
                   {"flow_id": s.flow_id, "order_id": s.order_id, "currency": s.currency,
                    "amount": format_amount(s.wallet + s.card, s.currency)})

    @activity.defn(name=REFUND_CLAWBACK)
    async def clawback(self, req: ClawbackRequest) -> ClawbackResult:
        """The order's cashback, in proportion to what the order has refunded: a pending one is
        reduced by its own flow (signalled by the caller); an available one keeps
        cashback × (paid − refunded) / paid and the rest is clawed back from the wallet, so
        partial refunds add up to exactly the proportion, and the purchase records the
        refunded total."""
        async with self.sessions.begin() as session:
            purchases, ledger = PurchaseRepository(session), LedgerRepository(session)
            purchase = await purchases.cashback_of_order(req.tenant_id, req.order_id)
            if purchase is None:
                return ClawbackResult("none")
            if purchase.state not in ("available", "reversed", "not_eligible"):
                return ClawbackResult("signal_purchase", purchase.flow_id)
            order = await OrderRepository(session).lock(req.tenant_id, req.order_id)
            await purchases.record_refunded(req.tenant_id, req.order_id, order["refunded"])
            key = f"{req.flow_id}:clawback"
            if done := await ledger.transfer_amount(req.tenant_id, key):
                return ClawbackResult("clawed_back", purchase.flow_id, done)  # a retry
            if purchase.state != "available":
                return ClawbackResult("none")
            if (amount := await _clawback_due(ledger, req.tenant_id, purchase, order)) <= 0:
                return ClawbackResult("none")
            try:
                await ledger.post(req.tenant_id, req.flow_id, [TransferRequest(
                    key, AccountRef("user_wallet", purchase.user_id, purchase.currency),
                    AccountRef("cashback_funding", "tenant", purchase.currency), amount,
                    purchase.currency, "cashback_clawback", {"order_id": req.order_id})])
            except InsufficientFunds:
                return ClawbackResult("insufficient_funds", purchase.flow_id, amount)
        return ClawbackResult("clawed_back", purchase.flow_id, amount)


async def _clawback_due(ledger: LedgerRepository, tenant_id: str, purchase: Any,
                        order: dict[str, Any]) -> int:
    """What is still to claw back: the posted cashback less what the order's unrefunded part
    keeps (rounded half-up) and less what earlier refunds clawed back already."""
    _, posted, clawed = await ledger.purchase_cashback(tenant_id, purchase.flow_id,
                                                       purchase.user_id, order["order_id"])
    kept = round_half_up(Decimal(posted) * (order["amount"] - order["refunded"])
                         / order["amount"])
    return int(posted - kept - clawed)
