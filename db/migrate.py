"""Apply Alembic migrations programmatically (used by the dev stack, the CLI and the tests)."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


@functools.cache
def head_revision() -> str:
    """The newest migration this code ships."""
    return ScriptDirectory(str(MIGRATIONS)).get_current_head() or ""


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every migration this code ships."""
    return frozenset(s.revision for s in ScriptDirectory(str(MIGRATIONS)).walk_revisions())


def schema_problem(current: str | None) -> str | None:
    """Why a database at migration ``current`` is not ready for this code (None: it is).

    Ready at this code's head, or at a revision this code does not know: a newer release ran
    its expand migration first (additive, so this code keeps working) and this pod is the old
    side of a rolling deploy. Not ready with no migration yet, or at an older known one."""
    head = head_revision()
    if current is None:
        return f"migrations not current (none applied; this code needs {head})"
    if current != head and current in known_revisions():
        return f"migrations not current ({current} is older than this code's {head})"
    return None


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, database_url, revision)


async def database_revision(session: AsyncSession) -> str | None:
    """The migration the database is at (None before the first one)."""
    value = (await session.execute(text("SELECT version_num FROM alembic_version"))
             ).scalar_one_or_none()
    return str(value) if value is not None else None
