"""ledger_post_many(): several independent ledger requests in one statement (group commit).

Each request keeps its own meaning: it is exactly one `ledger_post()` call (all or nothing,
idempotent keys, its own refusal), but the requests share one transaction, so concurrent
postings pay for one round trip and one commit instead of one each. Every account the batch
touches is locked first, in ascending id order, in one statement; the per-request calls then
only re-take locks already held, so batches and single posts still lock in one global order
and never deadlock. A refusal in one request writes nothing for it and does not affect the
others (refusals are returned, not raised). A same-key race (SQLSTATE WL001) aborts the whole
statement; the caller then posts the requests one by one.

The function's source is db/sql/0009_ledger_post_many.sql.

Revision ID: 0009
Revises: 0008
"""

import importlib

from alembic import op

from db.sqlfiles import read_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = "\n" + read_sql("0009_ledger_post_many.sql")

DOWNGRADE = r"""
DROP FUNCTION ledger_post_many(uuid[], text[], boolean[], int[], text[], bigint[], bigint[],
                               bigint[], text[], text[], text[], jsonb);
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
