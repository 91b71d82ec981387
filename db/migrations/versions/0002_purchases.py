"""Purchase-credit: store credentials, widget interactions, purchases, widget replay guard.

Revision ID: 0002
Revises: 0001
"""

import importlib

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = r"""
-- Per tenant and platform: the shared secret that signs the store's calls. HMAC verification
-- needs the secret itself, so it is stored (protect the database like a key store).
CREATE TABLE store_credentials (
    tenant_id   uuid NOT NULL REFERENCES tenants(id),
    platform    text NOT NULL CHECK (platform IN ('widget', 'shopify', 'woocommerce')),
    public_key  text NOT NULL,   -- widget public key, Shopify shop domain, WooCommerce store URL
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, platform, public_key)
);
CREATE INDEX store_credentials_lookup ON store_credentials (platform, public_key);

CREATE TABLE widget_interactions (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants(id),
    user_id     text,
    email       text,
    session_id  text,
    kind        text NOT NULL CHECK (kind IN ('view', 'click', 'chat')),
    occurred_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX widget_interactions_user ON widget_interactions (tenant_id, user_id, occurred_at);
CREATE INDEX widget_interactions_email ON widget_interactions (tenant_id, email, occurred_at);
CREATE INDEX widget_interactions_time ON widget_interactions (tenant_id, occurred_at);

-- One row per (tenant, store order id), whichever route reported it first.
CREATE TABLE purchases (
    tenant_id          uuid NOT NULL REFERENCES tenants(id),
    store_order_id     text NOT NULL,
    flow_id            text NOT NULL UNIQUE,
    user_id            text NOT NULL,
    email              text,
    amount             bigint NOT NULL CHECK (amount > 0),
    currency           text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    platform           text NOT NULL
                       CHECK (platform IN ('widget', 'shopify', 'woocommerce', 'api')),
    shop               text,
    occurred_at        timestamptz NOT NULL,
    attribution_method text,
    confidence         numeric(3, 2),
    tier               text,
    cashback           bigint NOT NULL DEFAULT 0 CHECK (cashback >= 0),
    points             bigint NOT NULL DEFAULT 0 CHECK (points >= 0),
    refunded           bigint NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    state              text NOT NULL DEFAULT 'received',
    release_at         timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, store_order_id)
);
CREATE INDEX purchases_tenant_time ON purchases (tenant_id, occurred_at);
CREATE INDEX purchases_user ON purchases (tenant_id, user_id);

-- Widget signatures seen within the timestamp tolerance: a replayed call is refused.
CREATE TABLE widget_replay_guard (
    signature  text PRIMARY KEY,
    seen_at    timestamptz NOT NULL DEFAULT now()
);
"""

DOWNGRADE = r"""
DROP TABLE widget_replay_guard;
DROP TABLE purchases;
DROP TABLE widget_interactions;
DROP TABLE store_credentials;
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
