"""Tenants, API keys, users, the double-entry ledger, flows (idempotency keys), webhook events.

Revision ID: 0001
Revises:
"""

import re

from alembic import op

from db.sqlfiles import read_sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    name        text NOT NULL,
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          text PRIMARY KEY,                       -- public key id (the key's prefix)
    tenant_id   uuid NOT NULL REFERENCES tenants(id),
    key_hash    text NOT NULL,                          -- sha256 of the whole key, hex
    scopes      text[] NOT NULL CHECK (scopes <@ ARRAY['client', 'admin']::text[]
                                       AND cardinality(scopes) > 0),
    actor       text NOT NULL,                          -- who holds it (admin identity)
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE users (
    tenant_id   uuid NOT NULL REFERENCES tenants(id),
    user_id     text NOT NULL CHECK (user_id ~ '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$'),
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);

-- Every balance is credits minus debits. User accounts can never go below zero available:
-- the database enforces it, not just Python.
CREATE TABLE accounts (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants(id),
    kind        text NOT NULL CHECK (kind IN ('user_wallet', 'user_points', 'gateway_clearing',
                    'cashback_funding', 'merchant_revenue', 'campaign', 'payouts_in_transit',
                    'fees', 'points_issuance')),
    owner_id    text NOT NULL,
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    posted      bigint NOT NULL DEFAULT 0,
    pending_in  bigint NOT NULL DEFAULT 0 CHECK (pending_in >= 0),
    pending_out bigint NOT NULL DEFAULT 0 CHECK (pending_out >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, kind, owner_id, currency),
    UNIQUE (id, tenant_id, currency),
    CONSTRAINT user_accounts_never_negative CHECK (
        kind NOT IN ('user_wallet', 'user_points') OR (posted >= 0 AND posted - pending_out >= 0))
);

CREATE TABLE transfers (
    id                  bigserial PRIMARY KEY,
    tenant_id           uuid NOT NULL,
    idempotency_key     text NOT NULL,
    debit_account_id    bigint NOT NULL,
    credit_account_id   bigint NOT NULL,
    amount              bigint NOT NULL CHECK (amount > 0),
    currency            text NOT NULL,
    state               text NOT NULL CHECK (state IN ('pending', 'posted', 'voided')),
    kind                text NOT NULL,
    flow_id             text,
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    debit_posted_after  bigint,   -- posted balances right after this transfer posted
    credit_posted_after bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    resolved_at         timestamptz,
    CONSTRAINT transfers_key_unique UNIQUE (tenant_id, idempotency_key),
    CONSTRAINT transfers_distinct_accounts CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT transfers_posted_has_balances CHECK (
        state <> 'posted' OR (debit_posted_after IS NOT NULL AND credit_posted_after IS NOT NULL)),
    -- both sides belong to the transfer's tenant and are in the transfer's currency
    FOREIGN KEY (debit_account_id, tenant_id, currency)
        REFERENCES accounts (id, tenant_id, currency),
    FOREIGN KEY (credit_account_id, tenant_id, currency)
        REFERENCES accounts (id, tenant_id, currency)
);
CREATE INDEX transfers_debit ON transfers (debit_account_id, id);
CREATE INDEX transfers_credit ON transfers (credit_account_id, id);
CREATE INDEX transfers_flow ON transfers (flow_id);

""" + read_sql("0001_transfers_guard.sql") + r"""
-- One row per flow-starting request: the tenant-scoped Idempotency-Key, the request's
-- fingerprint, the flow it started and the answer given (replayed for retries).
CREATE TABLE flows (
    tenant_id        uuid NOT NULL REFERENCES tenants(id),
    idempotency_key  text NOT NULL,
    flow_id          text NOT NULL UNIQUE,
    kind             text NOT NULL,
    user_id          text,
    request_hash     text NOT NULL,
    response         jsonb,
    status_code      integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, idempotency_key)
);
CREATE INDEX flows_tenant_created ON flows (tenant_id, created_at DESC, flow_id);

-- Gateway/store webhooks, stored once per event id.
CREATE TABLE webhook_events (
    source       text NOT NULL,
    event_id     text NOT NULL,
    event_type   text NOT NULL,
    flow_id      text,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    deliveries   integer NOT NULL DEFAULT 1,
    signalled_at timestamptz,
    outcome      text,
    PRIMARY KEY (source, event_id)
);
"""

DOWNGRADE = r"""
DROP TABLE webhook_events;
DROP TABLE flows;
DROP TRIGGER transfers_no_truncate ON transfers;
DROP TRIGGER transfers_guard ON transfers;
DROP TABLE transfers;
DROP FUNCTION transfers_guard();
DROP FUNCTION transfers_no_truncate();
DROP TABLE accounts;
DROP TABLE users;
DROP TABLE api_keys;
DROP TABLE tenants;
"""


def statements(sql: str) -> list[str]:
    """Split a script on top-level semicolons (not inside $$-quoted function bodies): asyncpg
    prepares one statement at a time."""
    out, buf, quoted = [], [], False
    for part in sql.split("$$"):
        if quoted:
            buf.append("$$" + part + "$$")
        else:
            part = re.sub(r"--[^\n]*", "", part)  # comments may hold semicolons
            *done, rest = part.split(";")
            for piece in done:
                buf.append(piece)
                out.append("".join(buf).strip())
                buf = []
            buf.append(rest)
        quoted = not quoted
    tail = "".join(buf).strip()
    return [s for s in (*out, tail) if s]


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
