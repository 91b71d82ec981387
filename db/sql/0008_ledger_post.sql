CREATE FUNCTION ledger_post(p_tenant uuid, p_flow text, p_pending boolean, p_keys text[],
                            p_debits bigint[], p_credits bigint[], p_amounts bigint[],
                            p_currencies text[], p_kinds text[], p_metas text[],
                            p_events jsonb DEFAULT '[]')
RETURNS TABLE (idempotency_key text, transfer_id bigint, state text, replayed boolean,
               problem text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n        int := cardinality(p_keys);
    ids      bigint[];
    kinds    text[];
    bal      bigint[];
    p_in     bigint[];
    p_out    bigint[];
    orig_p   bigint[];
    orig_in  bigint[];
    orig_out bigint[];
    dpa      bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    cpa      bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    fresh    boolean[] := array_fill(false, ARRAY[n]);
    res_id   bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    res_st   text[] := array_fill(NULL::text, ARRAY[n]);
    ins_keys text[];
    ins_ids  bigint[];
    seen     bigint[] := '{}';
    x        bigint;
    n_new    int := 0;
    i        int;
    d        int;
    c        int;
    prev     record;
BEGIN
    -- (Plain PL/pgSQL expressions below where possible: each SQL statement costs an executor
    -- start; this runs once per ledger write.)
    FOREACH x IN ARRAY p_debits || p_credits LOOP
        IF NOT x = ANY(seen) THEN
            seen := seen || x;
        END IF;
    END LOOP;
    -- Lock every account touched, ascending id: concurrent flows serialise, never deadlock.
    SELECT array_agg(a.id), array_agg(a.kind), array_agg(a.posted), array_agg(a.pending_in),
           array_agg(a.pending_out)
      INTO ids, kinds, bal, p_in, p_out
      FROM (SELECT ac.id, ac.kind, ac.posted, ac.pending_in, ac.pending_out FROM accounts ac
             WHERE ac.id = ANY(seen) AND ac.tenant_id = p_tenant
             ORDER BY ac.id FOR UPDATE) a;
    IF coalesce(cardinality(ids), 0) <> cardinality(seen) THEN
        RETURN QUERY SELECT NULL::text, NULL::bigint, NULL::text, false,
                            'race: an account is not visible yet'::text;
        RETURN;
    END IF;
    orig_p := bal; orig_in := p_in; orig_out := p_out;

    -- Decide every transfer on the locked balances before writing anything.
    FOR i IN 1..n LOOP
        SELECT t.id, t.state, t.debit_account_id, t.credit_account_id, t.amount, t.currency
          INTO prev FROM transfers t
         WHERE t.tenant_id = p_tenant AND t.idempotency_key = p_keys[i];
        IF FOUND THEN
            IF (prev.debit_account_id, prev.credit_account_id, prev.amount, prev.currency)
               IS DISTINCT FROM (p_debits[i], p_credits[i], p_amounts[i], p_currencies[i]) THEN
                RETURN QUERY SELECT p_keys[i], prev.id, NULL::text, true,
                    'conflict: idempotency key ' || p_keys[i]
                    || ' was used for a different transfer';
                RETURN;
            END IF;
            res_id[i] := prev.id;
            res_st[i] := prev.state;
            CONTINUE;
        END IF;
        fresh[i] := true;
        n_new := n_new + 1;
        d := array_position(ids, p_debits[i]);
        c := array_position(ids, p_credits[i]);
        IF kinds[d] IN ('user_wallet', 'user_points')
           AND bal[d] - p_out[d] < p_amounts[i] THEN
            RETURN QUERY SELECT p_keys[i], NULL::bigint, NULL::text, false,
                'insufficient_funds: available ' || (bal[d] - p_out[d]) || ' < '
                || p_amounts[i] || ' ' || p_currencies[i];
            RETURN;
        END IF;
        IF p_pending THEN
            p_out[d] := p_out[d] + p_amounts[i];
            p_in[c] := p_in[c] + p_amounts[i];
        ELSE
            bal[d] := bal[d] - p_amounts[i];
            bal[c] := bal[c] + p_amounts[i];
            dpa[i] := bal[d];
            cpa[i] := bal[c];
        END IF;
    END LOOP;

    IF n_new > 0 THEN
        -- Write: the new transfers, then every changed balance in one statement.
        WITH ins AS (
            INSERT INTO transfers (tenant_id, idempotency_key, debit_account_id,
                                   credit_account_id, amount, currency, state, kind, flow_id,
                                   metadata, debit_posted_after, credit_posted_after,
                                   resolved_at)
            SELECT p_tenant, p_keys[j], p_debits[j], p_credits[j], p_amounts[j],
                   p_currencies[j], CASE WHEN p_pending THEN 'pending' ELSE 'posted' END,
                   p_kinds[j], p_flow, coalesce(p_metas[j], '{}')::jsonb, dpa[j], cpa[j],
                   CASE WHEN p_pending THEN NULL ELSE now() END
              FROM generate_subscripts(p_keys, 1) j WHERE fresh[j]
            ON CONFLICT ON CONSTRAINT transfers_key_unique DO NOTHING
            RETURNING idempotency_key, id)
        SELECT array_agg(ins.idempotency_key), array_agg(ins.id) INTO ins_keys, ins_ids FROM ins;
        IF coalesce(cardinality(ins_keys), 0) <> n_new THEN
            RAISE EXCEPTION 'a concurrent writer used one of %', p_keys USING ERRCODE = 'WL001';
        END IF;
        UPDATE accounts a
           SET posted = a.posted + (v.p - v.op), pending_in = a.pending_in + (v.pi - v.opi),
               pending_out = a.pending_out + (v.po - v.opo)
          FROM unnest(ids, bal, orig_p, p_in, orig_in, p_out, orig_out)
               AS v(id, p, op, pi, opi, po, opo)
         WHERE a.id = v.id AND (v.p, v.pi, v.po) IS DISTINCT FROM (v.op, v.opi, v.opo);
    END IF;

    -- The business events this movement causes, in the same transaction (the outbox).
    IF jsonb_array_length(p_events) > 0 THEN
        INSERT INTO outbox_events (tenant_id, event_key, type, payload)
        SELECT p_tenant, e->>'key', e->>'type', e->'payload'
          FROM jsonb_array_elements(p_events) e
        ON CONFLICT DO NOTHING;
    END IF;

    FOR i IN 1..n LOOP
        idempotency_key := p_keys[i];
        replayed := NOT fresh[i];
        problem := NULL;
        IF fresh[i] THEN
            transfer_id := ins_ids[array_position(ins_keys, p_keys[i])];
            state := CASE WHEN p_pending THEN 'pending' ELSE 'posted' END;
        ELSE
            transfer_id := res_id[i];
            state := res_st[i];
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
