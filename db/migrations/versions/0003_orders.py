"""Orders paid through OrderPaymentWorkflow.

Revision ID: 0003
Revises: 0002
"""

import importlib

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = r"""
-- One row per (tenant, order id): an order is paid at most once.
CREATE TABLE orders (
    tenant_id     uuid NOT NULL REFERENCES tenants(id),
    order_id      text NOT NULL,
    flow_id       text NOT NULL UNIQUE,
    user_id       text NOT NULL,
    amount        bigint NOT NULL CHECK (amount > 0),
    currency      text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    method        text NOT NULL CHECK (method IN ('wallet', 'points', 'card', 'split')),
    wallet_amount bigint NOT NULL DEFAULT 0 CHECK (wallet_amount >= 0),
    card_amount   bigint NOT NULL DEFAULT 0 CHECK (card_amount >= 0),
    points        bigint NOT NULL DEFAULT 0 CHECK (points >= 0),
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing',
                      'paid', 'failed', 'cancelled', 'refunded', 'partially_refunded')),
    error         text,
    payment_id    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, order_id),
    CONSTRAINT orders_parts_add_up CHECK (method = 'points' OR wallet_amount + card_amount = amount)
);
"""

DOWNGRADE = "DROP TABLE orders;"


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
