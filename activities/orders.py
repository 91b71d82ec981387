"""Order activities: the order's status row, written as the flow moves."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.campaigns import emit
from contracts.order import ORDER_RECORD, OrderStatusUpdate


class OrderActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @activity.defn(name=ORDER_RECORD)
    async def record_status(self, update: OrderStatusUpdate) -> None:
        async with self.sessions.begin() as session:
            await session.execute(text(
                "UPDATE orders SET status = :s, error = :e, "
                "payment_id = coalesce(:p, payment_id), updated_at = now() "
                "WHERE tenant_id = :t AND order_id = :o"),
                {"s": update.status, "e": update.error, "p": update.payment_id,
                 "t": update.tenant_id, "o": update.order_id})
            if update.status in ("paid", "failed"):
                await emit(session, update.tenant_id, f"order.{update.status}:{update.order_id}",
                           f"order.{update.status}", {"order_id": update.order_id,
                                                      **({"error": update.error}
                                                         if update.error else {})})
