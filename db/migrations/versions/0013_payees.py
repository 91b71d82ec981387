"""Payees: each user's payout account at a provider (a Stripe connected account), its
onboarding status as the provider last reported it, and which account each payout was made on
(so it can be asked about at its deadline). No bank details: the provider holds them.

Revision ID: 0013
Revises: 0012
"""

import importlib

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = r"""
CREATE TABLE payees (
    tenant_id        uuid NOT NULL,
    user_id          text NOT NULL,
    provider         text NOT NULL,                 -- stripe_connect
    account_id       text NOT NULL,                 -- acct_...
    payouts_enabled  boolean NOT NULL DEFAULT false,
    charges_enabled  boolean NOT NULL DEFAULT false,
    details_submitted boolean NOT NULL DEFAULT false,
    requirements_due text[] NOT NULL DEFAULT '{}',  -- what the provider still needs
    disabled_reason  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, provider),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id),
    UNIQUE (provider, account_id)
);
CREATE TABLE payee_payouts (
    gateway     text NOT NULL,
    payout_id   text NOT NULL,
    account_id  text NOT NULL,
    tenant_id   uuid NOT NULL,
    flow_id     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, payout_id)
);
"""

DOWNGRADE = r"""
DROP TABLE payee_payouts;
DROP TABLE payees;
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
