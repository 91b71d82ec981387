"""Refunds: per-order refund capacity (the database keeps refunds within what was paid) and
one row per refund flow.

Revision ID: 0004
Revises: 0003
"""

import importlib

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = r"""
ALTER TABLE orders
    ADD COLUMN reserved_refunds bigint NOT NULL DEFAULT 0,
    ADD COLUMN refunded bigint NOT NULL DEFAULT 0,
    ADD COLUMN card_refunded bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT orders_refunds_within_paid CHECK (
        reserved_refunds >= 0 AND refunded >= 0 AND refunded <= reserved_refunds
        AND reserved_refunds <= amount AND card_refunded <= card_amount);

CREATE TABLE refunds (
    tenant_id     uuid NOT NULL REFERENCES tenants(id),
    flow_id       text PRIMARY KEY,
    order_id      text NOT NULL,
    amount        bigint NOT NULL CHECK (amount > 0),
    currency      text NOT NULL,
    destination   text NOT NULL CHECK (destination IN ('wallet', 'original')),
    wallet_part   bigint NOT NULL DEFAULT 0,
    card_part     bigint NOT NULL DEFAULT 0,
    status        text NOT NULL DEFAULT 'requested',
    requested_by  text NOT NULL,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, order_id)
);
CREATE INDEX refunds_order ON refunds (tenant_id, order_id);
"""

DOWNGRADE = r"""
DROP TABLE refunds;
ALTER TABLE orders DROP CONSTRAINT orders_refunds_within_paid,
    DROP COLUMN reserved_refunds, DROP COLUMN refunded, DROP COLUMN card_refunded;
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
