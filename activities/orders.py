"""Order activities: the order's status row, written as the flow moves."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from contracts.order import ORDER_RECORD, OrderStatusUpdate
from db.orders import OrderRepository
from db.outbox import emit


class OrderActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @activity.defn(name=ORDER_RECORD)
    async def record_status(self, update: OrderStatusUpdate) -> None:
        """The order's new status; a final one (paid, failed) is announced in the outbox."""
        async with self.sessions.begin() as session:
            await OrderRepository(session).record_status(
                update.tenant_id, update.order_id, update.status, update.error,
                update.payment_id)
            if update.status in ("paid", "failed"):
                await emit(session, update.tenant_id, f"order.{update.status}:{update.order_id}",
                           f"order.{update.status}", {"order_id": update.order_id,
                                                      **({"error": update.error}
                                                         if update.error else {})})
