"""Wallet owners (the ``users`` table). Nothing here commits: the caller owns the transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class UserRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def create(self, tenant_id: str, user_id: str, email: str | None) -> bool:
        """Create the user; False when it already exists."""
        row = await self.session.execute(
            text("INSERT INTO users (tenant_id, user_id, email) VALUES (:t, :u, :e) "
                 "ON CONFLICT DO NOTHING RETURNING user_id"),
            {"t": tenant_id, "u": user_id, "e": email},
        )
        return row.first() is not None

    async def get(self, tenant_id: str, user_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(
            text("SELECT user_id, email, created_at FROM users WHERE tenant_id = :t "
                 "AND user_id = :u"),
            {"t": tenant_id, "u": user_id},
        )).first()
        return dict(row._mapping) if row else None
