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
