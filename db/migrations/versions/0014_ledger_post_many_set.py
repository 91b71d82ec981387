"""ledger_post_many(), set-based: the same requests, outcomes and locks, fewer statements.

0009's version called ``ledger_post()`` once per request, so a batch of eight requests ran
about forty statements, each paying an executor start (measured: most of PostgreSQL's time
per transfer in the group commit). This version locks every account of the batch once
(ascending id), reads the keys already written in one statement, decides every request in
memory on the locked balances in request order (a refused request writes nothing and does
not affect the others), then writes the batch with one INSERT into ``transfers``, one UPDATE
of the balances and one INSERT into the outbox. A key that appears twice in the batch, or a
same-key race with another writer, raises SQLSTATE WL001 as before: the caller then posts
the requests one by one. Transfer ids are taken from the sequence in batch order.

The function's source is db/sql/0014_ledger_post_many_set.sql; the downgrade restores 0009's.

Revision ID: 0014
Revises: 0013
"""

import importlib

from alembic import op

from db.sqlfiles import read_sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = "\n" + read_sql("0014_ledger_post_many_set.sql")

DOWNGRADE = "\n" + read_sql("0009_ledger_post_many.sql").replace(
    "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
