"""Database-level statements for tooling (the bench, test fixtures): create and drop a
database, vacuum tables, the server's version. Run on an engine, each in autocommit."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def _autocommit(engine: AsyncEngine, sql: str) -> None:
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(sql))


async def create_database(admin: AsyncEngine, name: str) -> None:
    await _autocommit(admin, f'CREATE DATABASE "{name}"')


async def drop_database(admin: AsyncEngine, name: str) -> None:
    await _autocommit(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def vacuum_analyze(engine: AsyncEngine, *tables: str) -> None:
    await _autocommit(engine, "VACUUM ANALYZE " + ", ".join(tables))


async def server_version(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        return str((await conn.execute(text("SHOW server_version"))).scalar_one())
