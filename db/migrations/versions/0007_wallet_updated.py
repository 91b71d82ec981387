"""`wallet.updated` events: the database records one in the outbox whenever a user wallet's or
points account's balances change, in the same transaction, whichever flow changed them — for
tenants with an enabled endpoint that listens to it (the highest-volume event is not written
for nobody; the other events are always recorded).

Revision ID: 0007
Revises: 0006
"""

import importlib

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

# Each currency's decimals as of this migration (frozen here: a later change to the currency
# table needs its own migration).
CURRENCY_EXPONENTS: dict[str, int] = {
    "EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "SEK": 2, "NOK": 2, "DKK": 2,
    "PLN": 2, "CZK": 2, "INR": 2, "BRL": 2, "MXN": 2, "SGD": 2, "HKD": 2, "NZD": 2, "ZAR": 2,
    "KES": 2, "NGN": 2, "JPY": 0, "KRW": 0, "PTS": 0,
}

# Decimal strings like the API's ("12.50"), with each currency's decimals as of this migration;
# one SQL expression, so PostgreSQL inlines it into the trigger's query.
_BY_EXPONENT: dict[int, list[str]] = {}
for _c, _e in sorted(CURRENCY_EXPONENTS.items()):
    _BY_EXPONENT.setdefault(_e, []).append(_c)
_CASES = " ".join(
    f"WHEN currency IN ({', '.join(repr(c) for c in cs)}) THEN "
    + ("minor::text" if e == 0 else f"round(minor::numeric / {10 ** e}, {e})::text")
    for e, cs in sorted(_BY_EXPONENT.items()))

UPGRADE = rf"""
CREATE FUNCTION money_text(minor bigint, currency text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE {_CASES} ELSE round(minor::numeric / 100, 2)::text END
$$;

CREATE FUNCTION wallet_updated_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.tenant_id = NEW.tenant_id
                   AND w.disabled_at IS NULL
                   AND (cardinality(w.event_types) = 0 OR 'wallet.updated' = ANY(w.event_types)))
    THEN
        RETURN NULL;
    END IF;
    -- One event per account and transaction (a later change in the same transaction
    -- replaces the payload, so the event carries the balances as committed).
    INSERT INTO outbox_events (tenant_id, event_key, type, payload)
    VALUES (NEW.tenant_id, 'wallet.updated:' || NEW.id || ':' || txid_current(),
            'wallet.updated', jsonb_build_object(
                'user_id', NEW.owner_id, 'account', NEW.kind, 'currency', NEW.currency,
                'posted', money_text(NEW.posted, NEW.currency),
                'pending_in', money_text(NEW.pending_in, NEW.currency),
                'pending_out', money_text(NEW.pending_out, NEW.currency),
                'available', money_text(NEW.posted - NEW.pending_out, NEW.currency)))
    ON CONFLICT (tenant_id, event_key) DO UPDATE SET payload = EXCLUDED.payload;
    RETURN NULL;
END
$$;

-- A row trigger with a WHEN clause: system accounts (most updated rows) never call it.
CREATE TRIGGER accounts_wallet_updated AFTER UPDATE ON accounts FOR EACH ROW
    WHEN (NEW.kind IN ('user_wallet', 'user_points')
          AND (NEW.posted, NEW.pending_in, NEW.pending_out)
              IS DISTINCT FROM (OLD.posted, OLD.pending_in, OLD.pending_out))
    EXECUTE FUNCTION wallet_updated_event();
"""

DOWNGRADE = r"""
DROP TRIGGER accounts_wallet_updated ON accounts;
DROP FUNCTION wallet_updated_event();
DROP FUNCTION money_text(bigint, text);
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
