"""ledger_post_many(): several independent ledger requests in one statement (group commit).

Each request keeps its own meaning: it is exactly one `ledger_post()` call (all or nothing,
idempotent keys, its own refusal), but the requests share one transaction, so concurrent
postings pay for one round trip and one commit instead of one each. Every account the batch
touches is locked first, in ascending id order, in one statement; the per-request calls then
only re-take locks already held, so batches and single posts still lock in one global order
and never deadlock. A refusal in one request writes nothing for it and does not affect the
others (refusals are returned, not raised). A same-key race (SQLSTATE WL001) aborts the whole
statement; the caller then posts the requests one by one.

Revision ID: 0009
Revises: 0008
"""

import importlib

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

statements = importlib.import_module("db.migrations.versions.0001_initial").statements

UPGRADE = r"""
CREATE FUNCTION ledger_post_many(p_tenants uuid[], p_flows text[], p_pending boolean[],
                                 p_ends int[], p_keys text[], p_debits bigint[],
                                 p_credits bigint[], p_amounts bigint[], p_currencies text[],
                                 p_kinds text[], p_metas text[], p_events jsonb)
RETURNS TABLE (request int, idempotency_key text, transfer_id bigint, state text,
               replayed boolean, problem text)
LANGUAGE plpgsql AS $$
DECLARE
    lo int := 1;
    hi int;
    i  int;
BEGIN
    -- Request i owns transfers lo..p_ends[i] of the flat arrays; its events are p_events[i].
    PERFORM 1 FROM accounts a WHERE a.id = ANY(p_debits || p_credits) ORDER BY a.id FOR UPDATE;
    FOR i IN 1..cardinality(p_ends) LOOP
        hi := p_ends[i];
        RETURN QUERY SELECT i, lp.idempotency_key, lp.transfer_id, lp.state, lp.replayed,
                            lp.problem
          FROM ledger_post(p_tenants[i], p_flows[i], p_pending[i], p_keys[lo:hi],
                           p_debits[lo:hi], p_credits[lo:hi], p_amounts[lo:hi],
                           p_currencies[lo:hi], p_kinds[lo:hi], p_metas[lo:hi],
                           p_events -> (i - 1)) lp;
        lo := hi + 1;
    END LOOP;
END
$$;
"""

DOWNGRADE = r"""
DROP FUNCTION ledger_post_many(uuid[], text[], boolean[], int[], text[], bigint[], bigint[],
                               bigint[], text[], text[], text[], jsonb);
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
