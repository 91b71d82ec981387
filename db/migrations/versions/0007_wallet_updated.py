"""`wallet.updated` events: the database records one in the outbox whenever a user wallet's or
points account's balances change, in the same transaction, whichever flow changed them.

Revision ID: 0007
Revises: 0006
"""

import importlib

from alembic import op

from workflows.contracts import CURRENCY_EXPONENTS

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

# Decimal strings like the API's ("12.50"), with each currency's decimals as of this migration.
_CASES = " ".join(f"WHEN '{c}' THEN {e}" for c, e in sorted(CURRENCY_EXPONENTS.items()))

UPGRADE = rf"""
CREATE FUNCTION money_text(minor bigint, currency text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT round(minor::numeric / (10::numeric ^ e), e)::text
    FROM (SELECT CASE currency {_CASES} ELSE 2 END AS e) x
$$;

CREATE FUNCTION wallet_updated_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One event per account and transaction (a later change in the same transaction
    -- replaces the payload, so the event carries the balances as committed).
    INSERT INTO outbox_events (tenant_id, event_key, type, payload)
    SELECT n.tenant_id, 'wallet.updated:' || n.id || ':' || txid_current(), 'wallet.updated',
           jsonb_build_object(
               'user_id', n.owner_id, 'account', n.kind, 'currency', n.currency,
               'posted', money_text(n.posted, n.currency),
               'pending_in', money_text(n.pending_in, n.currency),
               'pending_out', money_text(n.pending_out, n.currency),
               'available', money_text(n.posted - n.pending_out, n.currency))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.kind IN ('user_wallet', 'user_points')
      AND (n.posted, n.pending_in, n.pending_out)
          IS DISTINCT FROM (o.posted, o.pending_in, o.pending_out)
    ON CONFLICT (tenant_id, event_key) DO UPDATE SET payload = EXCLUDED.payload;
    RETURN NULL;
END
$$;

CREATE TRIGGER accounts_wallet_updated AFTER UPDATE ON accounts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_updated_events();
"""

DOWNGRADE = r"""
DROP TRIGGER accounts_wallet_updated ON accounts;
DROP FUNCTION wallet_updated_events();
DROP FUNCTION money_text(bigint, text);
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
