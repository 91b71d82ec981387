"""The database's own code (PL/pgSQL functions and triggers) lives in ``db/sql/*.sql``, one
readable home per function; migrations load it from there. A migration is frozen history, so
each file is named after the revision that creates it: a later change gets a new file."""

from __future__ import annotations

from pathlib import Path

SQL_DIR = Path(__file__).parent / "sql"


def read_sql(name: str) -> str:
    """The text of ``db/sql/<name>``, exactly as stored."""
    return (SQL_DIR / name).read_text(encoding="utf-8")
