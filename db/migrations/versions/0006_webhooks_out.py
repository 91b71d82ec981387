"""Outbound webhooks: tenants' endpoints, one delivery per (endpoint, event), its attempts.

Revision ID: 0006
Revises: 0005
"""

import importlib

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = r"""
CREATE TABLE webhook_endpoints (
    id                    text PRIMARY KEY,
    tenant_id             uuid NOT NULL REFERENCES tenants(id),
    url                   text NOT NULL,
    event_types           text[] NOT NULL DEFAULT '{}',   -- empty: every event
    secret                text NOT NULL,                  -- whsec_<base64>
    previous_secret       text,
    previous_valid_until  timestamptz,
    disabled_at           timestamptz,
    disabled_reason       text,
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id);

ALTER TABLE outbox_events ADD COLUMN dispatched_at timestamptz;
CREATE INDEX outbox_events_undispatched ON outbox_events (id) WHERE dispatched_at IS NULL;

CREATE TABLE webhook_deliveries (
    id            text PRIMARY KEY,                 -- the webhook-id, stable across retries
    tenant_id     uuid NOT NULL REFERENCES tenants(id),
    endpoint_id   text NOT NULL REFERENCES webhook_endpoints(id),
    event_id      bigint NOT NULL REFERENCES outbox_events(id),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'delivered', 'failed', 'disabled')),
    attempts      integer NOT NULL DEFAULT 0,
    last_status   integer,
    last_error    text,
    started_at    timestamptz,
    delivered_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, created_at DESC);

CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  text NOT NULL REFERENCES webhook_deliveries(id),
    at           timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    error        text,
    duration_ms  integer
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
"""

DOWNGRADE = r"""
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
ALTER TABLE outbox_events DROP COLUMN dispatched_at;
DROP TABLE webhook_endpoints;
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
