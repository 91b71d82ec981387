"""Settings audit: every change an admin (API key) or an operator (CLI) made to a tenant's
settings — who, which group, the group before and after, when.

Revision ID: 0012
Revises: 0011
"""

import importlib

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = r"""
CREATE TABLE settings_audit (
    id            bigserial PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants(id),
    actor         text NOT NULL,                 -- the admin key's holder, or cli:<user>
    key_id        text,                          -- the API key used (none from the CLI)
    setting_group text NOT NULL,                 -- rewards | refunds | withdrawals | events
    old_value     jsonb NOT NULL,                -- the group as it applied before
    new_value     jsonb NOT NULL,                -- and after
    changed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settings_audit_tenant ON settings_audit (tenant_id, id DESC);
"""

DOWNGRADE = r"""
DROP TABLE settings_audit;
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
