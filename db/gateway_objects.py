"""Gateway objects a flow created (a payment, a refund, a payout; later a checkout session),
stored by their gateway id so that webhooks are routed to the flow by the object they name,
with the amount the flow created it for. Nothing here commits: the caller owns the
transaction."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from contracts.money import Money


class GatewayObjectKind(StrEnum):
    """Gateway-neutral kinds (each gateway maps its own object types onto these)."""

    PAYMENT = "payment"
    REFUND = "refund"
    PAYOUT = "payout"
    CHECKOUT_SESSION = "checkout_session"


@dataclass(frozen=True)
class GatewayObject:
    tenant_id: str
    gateway: str
    kind: GatewayObjectKind
    object_id: str
    flow_id: str
    amount: Money


class GatewayObjectRepository:
    """On a session, or on a connection (an autocommit one: each statement its own
    transaction, as ``record`` alone needs)."""

    def __init__(self, session: AsyncSession | AsyncConnection):
        self.session = session

    async def record(self, obj: GatewayObject) -> GatewayObject:
        """Store the object once (a retried activity records nothing twice); returns the row as
        stored, i.e. the first recording's, which a caller compares with its own."""
        row = (await self.session.execute(
            text("INSERT INTO gateway_objects (gateway, kind, object_id, tenant_id, flow_id, "
                 "amount, currency) VALUES (:g, :k, :o, :t, :f, :a, :c) ON CONFLICT DO NOTHING "
                 "RETURNING tenant_id, flow_id, amount, currency"),
            {"g": obj.gateway, "k": obj.kind.value, "o": obj.object_id, "t": obj.tenant_id,
             "f": obj.flow_id, "a": obj.amount.amount, "c": obj.amount.currency},
        )).first()
        if row is not None:  # recorded now: the row as stored, without asking again
            return _stored(row, obj.gateway, obj.kind, obj.object_id)
        stored = await self.find(obj.gateway, obj.kind, obj.object_id)
        assert stored is not None
        return stored

    async def find(self, gateway: str, kind: GatewayObjectKind,
                   object_id: str) -> GatewayObject | None:
        row = (await self.session.execute(
            text("SELECT tenant_id, flow_id, amount, currency FROM gateway_objects "
                 "WHERE gateway = :g AND kind = :k AND object_id = :o"),
            {"g": gateway, "k": kind.value, "o": object_id},
        )).first()
        return None if row is None else _stored(row, gateway, kind, object_id)

    async def gateway_of(self, kind: GatewayObjectKind, object_id: str) -> str | None:
        """Which gateway holds the object a flow created (its ids do not say)."""
        return (await self.session.execute(
            text("SELECT gateway FROM gateway_objects WHERE kind = :k AND object_id = :o "
                 "LIMIT 1"), {"k": kind.value, "o": object_id})).scalar_one_or_none()


def _stored(row: Row[Any], gateway: str, kind: GatewayObjectKind,
            object_id: str) -> GatewayObject:
    """A stored row (tenant_id, flow_id, amount, currency) as the object."""
    return GatewayObject(row.tenant_id, gateway, kind, object_id, row.flow_id,
                         Money(int(row.amount), row.currency))
