"""API key lifecycle beyond creation (see TenantRepository.create_key). Nothing here commits:
the caller owns the transaction."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class ApiKeyRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def revoke(self, tenant_id: str, key_id: str) -> tuple[list[str], str] | None:
        """Revoke a tenant's active key; its (scopes, actor), or None when there is no such
        active key."""
        row = (await self.session.execute(text(
            "UPDATE api_keys SET revoked_at = now() WHERE id = :k AND tenant_id = :t "
            "AND revoked_at IS NULL RETURNING scopes, actor"),
            {"k": key_id, "t": tenant_id})).first()
        return (list(row.scopes), row.actor) if row is not None else None
