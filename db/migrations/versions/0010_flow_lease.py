"""The Idempotency-Key's lease: ``flows.locked_until`` says a request is starting the flow
right now (a concurrent duplicate answers 409 ``idempotency_in_progress`` until it ends or the
lease runs out, e.g. after the API process died mid-request).

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE flows ADD COLUMN locked_until timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE flows DROP COLUMN locked_until")
