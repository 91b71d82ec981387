"""The ledger transfers the top-up and the order payment ask for: which accounts, which
idempotency keys (derived from the flow id, so every retry writes nothing twice). Pure."""

from __future__ import annotations

from contracts.ledger import AccountRef, TransferRequest
from contracts.money import POINTS
from contracts.order import OrderPaymentInput
from contracts.topup import TopUpInput


def topup_credit(inp: TopUpInput) -> list[TransferRequest]:
    """The paid charge from the gateway's clearing account to the wallet, or, for a points
    package, to revenue while the package's points are issued to the user."""
    clearing = AccountRef("gateway_clearing", inp.gateway, inp.charge.currency)
    if inp.credit.currency != POINTS:
        return [TransferRequest(f"{inp.flow_id}:credit", clearing,
                                AccountRef("user_wallet", inp.user_id, inp.credit.currency),
                                inp.credit.amount, inp.credit.currency, "topup")]
    return [
        TransferRequest(f"{inp.flow_id}:charge", clearing,
                        AccountRef("merchant_revenue", "tenant", inp.charge.currency),
                        inp.charge.amount, inp.charge.currency, "points_purchase"),
        TransferRequest(f"{inp.flow_id}:points", AccountRef("points_issuance", "tenant", POINTS),
                        AccountRef("user_points", inp.user_id, POINTS),
                        inp.credit.amount, POINTS, "points_purchase",
                        {"package": inp.package or ""}),
    ]


def order_holds(inp: OrderPaymentInput) -> list[TransferRequest]:
    """Holds (pending transfers) on the wallet and points parts of an order."""
    cur, meta = inp.amount.currency, {"order_id": inp.order_id}
    holds = []
    if inp.wallet_amount:
        holds.append(TransferRequest(
            f"{inp.flow_id}:hold:wallet", AccountRef("user_wallet", inp.user_id, cur),
            AccountRef("merchant_revenue", "tenant", cur), inp.wallet_amount, cur,
            "order_payment", dict(meta)))
    if inp.points:
        holds.append(TransferRequest(
            f"{inp.flow_id}:hold:points", AccountRef("user_points", inp.user_id, POINTS),
            AccountRef("merchant_revenue", "tenant", POINTS), inp.points, POINTS,
            "order_payment", dict(meta)))
    return holds


def order_card_capture(inp: OrderPaymentInput) -> list[TransferRequest]:
    """The paid card part, from the gateway's clearing account to revenue."""
    cur = inp.amount.currency
    return [TransferRequest(f"{inp.flow_id}:card", AccountRef("gateway_clearing", inp.gateway, cur),
                            AccountRef("merchant_revenue", "tenant", cur), inp.card_amount, cur,
                            "order_payment", {"order_id": inp.order_id})]
