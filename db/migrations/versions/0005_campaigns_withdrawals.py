"""Campaigns (donations) and withdrawals; an outbox of business events for delivery.

Revision ID: 0005
Revises: 0004
"""

import importlib

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = r"""
CREATE TABLE campaigns (
    tenant_id     uuid NOT NULL REFERENCES tenants(id),
    campaign_id   text NOT NULL CHECK (campaign_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name          text NOT NULL,
    currency      text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    target        bigint NOT NULL CHECK (target > 0),
    capped        boolean NOT NULL DEFAULT true,
    ends_at       timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    closed_reason text,
    closed_at     timestamptz,
    flow_id       text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, campaign_id)
);

CREATE TABLE withdrawals (
    tenant_id     uuid NOT NULL REFERENCES tenants(id),
    flow_id       text PRIMARY KEY,
    user_id       text NOT NULL,
    amount        bigint NOT NULL CHECK (amount > 0),
    currency      text NOT NULL,
    method        text NOT NULL CHECK (method IN ('bank_transfer', 'mobile_money', 'paypal',
                      'crypto')),
    destination   text NOT NULL,
    status        text NOT NULL DEFAULT 'requested',
    requested_by  text NOT NULL,
    payout_id     text,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX withdrawals_tenant_status ON withdrawals (tenant_id, status, created_at);
CREATE INDEX withdrawals_user_day ON withdrawals (tenant_id, user_id, created_at);

-- Business events (campaign.closed, donation.completed, withdrawal.*), written in the same
-- transaction as the change they describe; delivered to tenants' endpoints from here.
CREATE TABLE outbox_events (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants(id),
    event_key   text NOT NULL,
    type        text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, event_key)
);
"""

DOWNGRADE = r"""
DROP TABLE outbox_events;
DROP TABLE withdrawals;
DROP TABLE campaigns;
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
