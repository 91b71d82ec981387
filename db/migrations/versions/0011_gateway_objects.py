"""Gateway objects: every object a flow created at a gateway (a payment, a refund, a payout, a
checkout session), so its webhooks are routed by the stored object id, not by what the event's
metadata says. One row per (gateway, kind, object id): the gateway's ids are unique across its
accounts, and a webhook names no tenant. Incoming webhook events get a ``detail`` (why one was
refused or ignored).

Revision ID: 0011
Revises: 0010
"""

import importlib

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = r"""
CREATE TABLE gateway_objects (
    gateway     text NOT NULL,                 -- 'stripe'
    kind        text NOT NULL                  -- gateway-neutral: what the flow created
                CHECK (kind IN ('payment', 'refund', 'payout', 'checkout_session')),
    object_id   text NOT NULL,                 -- the gateway's id (pi_…, re_…, po_…, cs_…)
    tenant_id   text NOT NULL,                 -- as the flow carries it
    flow_id     text NOT NULL,
    amount      bigint NOT NULL CHECK (amount >= 0),   -- minor units
    currency    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, kind, object_id)
);
CREATE INDEX gateway_objects_flow ON gateway_objects (flow_id);

ALTER TABLE webhook_events ADD COLUMN detail text;
"""

DOWNGRADE = r"""
ALTER TABLE webhook_events DROP COLUMN detail;
DROP TABLE gateway_objects;
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
