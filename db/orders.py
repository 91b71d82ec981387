"""Orders (the ``orders`` table): status as the payment flow moves, and the refund capacity
(``refunded ≤ reserved_refunds ≤ amount``, a CHECK). Nothing here commits: the caller owns the
transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class OrderRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def lock(self, tenant_id: str, order_id: str) -> dict[str, Any]:
        """The order row, locked until the transaction ends (refunds serialise on it)."""
        row = (await self.session.execute(text(
            "SELECT * FROM orders WHERE tenant_id = :t AND order_id = :o FOR UPDATE"),
            {"t": tenant_id, "o": order_id})).one()
        return dict(row._mapping)

    async def amount(self, tenant_id: str, order_id: str) -> int:
        return int((await self.session.execute(text(
            "SELECT amount FROM orders WHERE tenant_id = :t AND order_id = :o"),
            {"t": tenant_id, "o": order_id})).scalar_one())

    async def record_status(self, tenant_id: str, order_id: str, status: str,
                            error: str | None, payment_id: str | None) -> None:
        await self.session.execute(text(
            "UPDATE orders SET status = :s, error = :e, "
            "payment_id = coalesce(:p, payment_id), updated_at = now() "
            "WHERE tenant_id = :t AND order_id = :o"),
            {"s": status, "e": error, "p": payment_id, "t": tenant_id, "o": order_id})

    async def reserve_refund(self, tenant_id: str, order_id: str, amount: int,
                             card: int) -> None:
        """Reserve ``amount`` of refund capacity, ``card`` of it to the card."""
        await self.session.execute(text(
            "UPDATE orders SET reserved_refunds = reserved_refunds + :a, "
            "card_refunded = card_refunded + :c, updated_at = now() "
            "WHERE tenant_id = :t AND order_id = :o"),
            {"a": amount, "c": card, "t": tenant_id, "o": order_id})

    async def release_refund(self, tenant_id: str, order_id: str, amount: int,
                             card: int) -> None:
        """Give back a reservation that was not refunded (it can be requested again)."""
        await self.reserve_refund(tenant_id, order_id, -amount, -card)

    async def record_refunded(self, tenant_id: str, order_id: str, refunded: int,
                              status: str) -> None:
        await self.session.execute(text(
            "UPDATE orders SET refunded = :r, status = :st, updated_at = now() "
            "WHERE tenant_id = :t AND order_id = :o"),
            {"r": refunded, "st": status, "t": tenant_id, "o": order_id})


class OrderQueries:
    """The API's order statements: an order as read by the API, and the row a payment starts
    with. Nothing here commits."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def get(self, tenant_id: str, order_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(text(
            "SELECT * FROM orders WHERE tenant_id = :t AND order_id = :o"),
            {"t": tenant_id, "o": order_id})).first()
        return dict(row._mapping) if row else None

    async def create(self, tenant_id: str, order_id: str, flow_id: str, user_id: str,
                     amount: int, currency: str, method: str, wallet_amount: int,
                     card_amount: int, points: int) -> None:
        """The order row (once: a known order keeps its row)."""
        await self.session.execute(text(
            "INSERT INTO orders (tenant_id, order_id, flow_id, user_id, amount, currency, method, "
            "wallet_amount, card_amount, points) VALUES (:t, :o, :f, :u, :a, :c, :m, :w, :cd, :p) "
            "ON CONFLICT DO NOTHING"),
            {"t": tenant_id, "o": order_id, "f": flow_id, "u": user_id, "a": amount,
             "c": currency, "m": method, "w": wallet_amount, "cd": card_amount, "p": points})
