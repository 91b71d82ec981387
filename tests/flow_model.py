"""A plain-Python model of what walletflow's flows must show (tests/test_flow_model.py drives it
beside the real stack and compares the two after every step).

One user (``user-1``), one currency (EUR, minor units). The model follows top-ups, orders
(wallet, card, split), refunds (to the wallet or the original method, above the tenant's
approval threshold or not), purchases and their cashback (pending through a return window,
available, reduced, reversed, clawed back), and says what every wallet, order, purchase and
system account must hold and which outbound events must have been recorded with which amounts.
Nothing here talks to the stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from contracts.money import round_half_up
from contracts.rewards import cashback_for, points_for

RATE = "0.10"
CUR = "EUR"


@dataclass
class Order:
    order_id: str
    amount: int
    wallet: int
    card: int
    status: str  # paid | failed | partially_refunded | refunded
    refunded: int = 0
    reserved: int = 0  # refund capacity reserved (awaiting approval, at the gateway, booked)
    card_reserved: int = 0
    purchase: str | None = None  # the store order id of its purchase (the same id)

    @property
    def refundable(self) -> int:
        return self.amount - self.reserved if self.status in PAID else 0


PAID = ("paid", "partially_refunded", "refunded")


@dataclass
class Refund:
    flow_id: str
    order_id: str
    amount: int
    destination: str
    state: str  # awaiting_approval | awaiting_gateway | refunded | rejected | failed
    wallet: int = 0
    card: int = 0


@dataclass
class Purchase:
    order_id: str
    amount: int
    state: str  # pending | available | reversed
    hold: int = 0  # the pending hold
    posted: int = 0  # cashback made available
    clawed: int = 0
    refunded: int = 0  # what the purchase's flow counted as refunded
    linked: bool = False  # reported for an order paid here (its refunds claw back)
    events: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Withdrawal:
    flow_id: str
    amount: int
    state: str  # awaiting_approval | paid | rejected
    events: list[str] = field(default_factory=list)  # withdrawal.<status>, in order


@dataclass
class Expected:
    """What a refund request must be answered."""

    status: int
    state: str | None = None  # the answer's state (201/202)
    code: str | None = None  # the problem's code (4xx)


@dataclass
class Model:
    threshold: int | None = None  # the tenant's refund approval threshold
    window: int = 0  # the purchases' return window (0: available at once)
    posted: int = 0  # user-1's EUR wallet
    pending_out: int = 0
    points: int = 0
    revenue: int = 0  # merchant_revenue EUR
    clearing: int = 0  # gateway_clearing EUR
    funding: int = 0  # cashback_funding EUR (posted)
    transit: int = 0  # payouts_in_transit EUR (posted: withdrawals paid out)
    orders: dict[str, Order] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    purchases: dict[str, Purchase] = field(default_factory=dict)
    topups: dict[str, tuple[str, int]] = field(default_factory=dict)  # flow → (state, amount)
    withdrawals: dict[str, Withdrawal] = field(default_factory=dict)

    # -- the wallet ------------------------------------------------------------------------------

    @property
    def pending_in(self) -> int:
        return sum(p.hold for p in self.purchases.values() if p.state == "pending")

    @property
    def available(self) -> int:
        return self.posted - self.pending_out

    def cashback(self) -> tuple[int, int, int]:
        """The wallet's cashback: pending, available (posted less clawbacks), clawed back."""
        ps = self.purchases.values()
        posted, clawed = sum(p.posted for p in ps), sum(p.clawed for p in ps)
        return self.pending_in, posted - clawed, clawed

    # -- top-ups and orders ----------------------------------------------------------------------

    def topup(self, flow_id: str, amount: int, paid: bool) -> None:
        self.topups[flow_id] = ("completed" if paid else "failed", amount)
        if paid:
            self.posted += amount
            self.clearing -= amount

    def order(self, order_id: str, amount: int, wallet: int, paid: bool) -> str:
        """An order's outcome: paid, failed (the card declined) or insufficient_funds (the
        wallet part cannot be held: refused at once)."""
        card = amount - wallet
        if wallet > self.available:
            self.orders[order_id] = Order(order_id, amount, wallet, card, "failed")
            return "insufficient_funds"
        if not paid:
            self.orders[order_id] = Order(order_id, amount, wallet, card, "failed")
            return "failed"
        self.orders[order_id] = Order(order_id, amount, wallet, card, "paid")
        self.posted -= wallet
        self.clearing -= card
        self.revenue += amount
        return "paid"

    # -- refunds ---------------------------------------------------------------------------------

    def refund_refusal(self, order_id: str, amount: int) -> Expected | None:
        """The API's checks before anything is written."""
        order = self.orders[order_id]
        if order.status not in PAID:
            return Expected(409, code="not_refundable")
        if amount > order.amount - order.reserved:
            return Expected(422, code="refund_exceeds_paid")
        return None

    def needs_approval(self, order_id: str, amount: int) -> bool:
        held = self.orders[order_id].reserved
        return self.threshold is not None and held + amount >= self.threshold

    def refund(self, flow_id: str, order_id: str, amount: int, destination: str,
               approval: bool | None = None) -> Expected:
        """A refund request, alone (or at its turn in a serial order). ``approval`` overrides
        whether it needs an admin (a concurrent batch's decision, within its bounds)."""
        refused = self.refund_refusal(order_id, amount)
        if refused is not None:
            return refused
        order = self.orders[order_id]
        card = (min(amount, order.card - order.card_reserved) if destination == "original"
                else 0)
        order.reserved += amount
        order.card_reserved += card
        needs = self.needs_approval(order_id, amount) if approval is None else approval
        r = Refund(flow_id, order_id, amount, destination, "", amount - card, card)
        self.refunds[flow_id] = r
        if needs:
            r.state = "awaiting_approval"
            return Expected(202, "awaiting_approval")
        return self.proceed(flow_id)

    def proceed(self, flow_id: str) -> Expected:
        """Approved (or needing no approval): to the gateway first when a card part goes back,
        else booked at once."""
        r = self.refunds[flow_id]
        if r.card:
            r.state = "awaiting_gateway"
            return Expected(202, "awaiting_gateway")
        self.book(flow_id)
        return Expected(201, "refunded")

    def release(self, flow_id: str, state: str) -> None:
        """Rejected, or the gateway refund failed: the capacity goes back."""
        r = self.refunds[flow_id]
        order = self.orders[r.order_id]
        order.reserved -= r.amount
        order.card_reserved -= r.card
        r.state = state

    def book(self, flow_id: str) -> None:
        r = self.refunds[flow_id]
        r.state = "refunded"
        order = self.orders[r.order_id]
        order.refunded += r.amount
        order.status = "refunded" if order.refunded == order.amount else "partially_refunded"
        self.revenue -= r.amount
        self.posted += r.wallet
        self.clearing += r.card
        if order.purchase is not None:
            self.claw_back(self.purchases[order.purchase], order, r.amount)

    def claw_back(self, p: Purchase, order: Order, amount: int) -> None:
        """A refund of the purchase's order: a pending cashback is reduced (or reversed), an
        available one keeps cashback × (paid − refunded) / paid and the rest is clawed back
        from the wallet when it has enough (else by a later refund)."""
        if p.state == "pending":
            self.store_refund(p, amount)
        elif p.state == "available":
            kept = round_half_up(Decimal(p.posted) * (order.amount - order.refunded)
                                 / order.amount)
            due = p.posted - kept - p.clawed
            if 0 < due <= self.available:
                p.clawed += due
                self.posted -= due
                self.funding += due

    # -- purchases -------------------------------------------------------------------------------

    def purchase(self, order_id: str, amount: int, linked: bool) -> None:
        p = Purchase(order_id, amount, "pending", linked=linked)
        self.purchases[order_id] = p
        if linked:
            self.orders[order_id].purchase = order_id
        p.hold = cashback_for(amount, RATE)
        p.events.append(("cashback.pending", p.hold))
        if self.window == 0:
            self.make_available(p)

    def make_available(self, p: Purchase) -> None:
        p.state, p.posted, p.hold = "available", p.hold, 0
        self.posted += p.posted
        self.funding -= p.posted
        self.points += points_for(p.amount - p.refunded, CUR, 1)
        p.events.append(("cashback.available", p.posted))

    def store_refund(self, p: Purchase, amount: int) -> None:
        """The store (or an order refund) refunded part of a pending purchase."""
        if p.state != "pending":
            return
        p.refunded = min(p.amount, p.refunded + amount)
        if p.refunded >= p.amount:
            self.cancel(p)
            return
        p.hold = cashback_for(p.amount - p.refunded, RATE)
        p.events.append(("cashback.pending", p.hold))

    def cancel(self, p: Purchase) -> None:
        if p.state != "pending":
            return
        p.events.append(("cashback.reversed", p.hold))
        p.state, p.hold = "reversed", 0

    # -- withdrawals (to the user's onboarded payout account) -------------------------------------

    def withdraw(self, flow_id: str, amount: int) -> Expected:
        """A withdrawal request: refused at once above the available balance, else the amount
        is held (pending out) until an admin decides."""
        if amount > self.available:
            return Expected(402, code="insufficient_funds")
        self.pending_out += amount
        self.withdrawals[flow_id] = Withdrawal(flow_id, amount, "awaiting_approval",
                                               ["withdrawal.awaiting_approval"])
        return Expected(202, "awaiting_approval")

    def decide_withdrawal(self, flow_id: str, approve: bool) -> None:
        """Approved and paid out (the hold posted to payouts in transit), or rejected (voided)."""
        w = self.withdrawals[flow_id]
        self.pending_out -= w.amount
        if approve:
            self.posted -= w.amount
            self.transit += w.amount
            w.state = "paid"
            w.events += ["withdrawal.approved", "withdrawal.paid"]
        else:
            w.state = "rejected"
            w.events.append("withdrawal.rejected")

    # -- what the stack must show ----------------------------------------------------------------

    def order_view(self, order_id: str) -> tuple[str, int, int]:
        o = self.orders[order_id]
        return o.status, o.refunded, o.refundable

    def purchase_view(self, order_id: str) -> tuple[str, int, int, int]:
        """state, cashback kept, pending, clawed back."""
        p = self.purchases[order_id]
        return p.state, p.hold + p.posted - p.clawed, p.hold, p.clawed

    def system(self) -> dict[str, int]:
        """Posted balances of the tenant's system accounts (EUR, and PTS issued)."""
        return {"merchant_revenue": self.revenue, "gateway_clearing": self.clearing,
                "cashback_funding": self.funding, "points_issuance": -self.points,
                "payouts_in_transit": self.transit}

    def refunds_completed(self) -> dict[str, int]:
        return {f: r.amount for f, r in self.refunds.items() if r.state == "refunded"}
