"""Drop ledger_post(): every ledger write now goes through ledger_post_many() (0014), a single
post being a batch of one, so the rules that decide a write live in one function.

The downgrade recreates it from db/sql/0008_ledger_post.sql (0009's ledger_post_many(), which
0014's downgrade restores, calls it).

Revision ID: 0015
Revises: 0014
"""

import importlib

from alembic import op

from db.sqlfiles import read_sql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = r"""
DROP FUNCTION ledger_post(uuid, text, boolean, text[], bigint[], bigint[], bigint[], text[],
                          text[], text[], jsonb);
"""

DOWNGRADE = "\n" + read_sql("0008_ledger_post.sql")


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
