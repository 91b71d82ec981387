"""`wallet.updated` events: the database records one in the outbox whenever a user wallet's or
points account's balances change, in the same transaction, whichever flow changed them — for
tenants with an enabled endpoint that listens to it (the highest-volume event is not written
for nobody; the other events are always recorded).

Revision ID: 0007
Revises: 0006
"""

import importlib

from alembic import op

from db.sqlfiles import read_sql

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

""" + read_sql("0007_wallet_updated_event.sql")

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
