"""ledger_post(): a batch of transfers written in one round trip, inside PostgreSQL.

The same rules the repository applied in Python, now next to the rows they guard: lock every
account in ascending id order; a key already written returns its first result (or a conflict if
the movement differs); a user account never goes below zero available; all or nothing; the
business events the movement causes go to the outbox in the same transaction. Business
refusals come back as a `problem` row and write nothing (the caller's transaction stays usable);
a same-key writer that raced in raises SQLSTATE WL001 (retry).

The function's source is db/sql/0008_ledger_post.sql.

Revision ID: 0008
Revises: 0007
"""

import importlib

from alembic import op

from db.sqlfiles import read_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = "\n" + read_sql("0008_ledger_post.sql")

DOWNGRADE = r"""
DROP FUNCTION ledger_post(uuid, text, boolean, text[], bigint[], bigint[], bigint[], text[],
                          text[], text[], jsonb);
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
