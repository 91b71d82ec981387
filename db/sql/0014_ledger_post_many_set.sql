CREATE OR REPLACE FUNCTION ledger_post_many(p_tenants uuid[], p_flows text[],
                                            p_pending boolean[], p_ends int[], p_keys text[],
                                            p_debits bigint[], p_credits bigint[],
                                            p_amounts bigint[], p_currencies text[],
                                            p_kinds text[], p_metas text[], p_events jsonb)
RETURNS TABLE (request int, idempotency_key text, transfer_id bigint, state text,
               replayed boolean, problem text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n_req     int := cardinality(p_ends);
    n         int := cardinality(p_keys);
    owner     int[] := array_fill(0, ARRAY[n]);
    ids       bigint[];
    tenants   uuid[];
    kinds     text[];
    bal       bigint[];
    p_in      bigint[];
    p_out     bigint[];
    orig_p    bigint[];
    orig_in   bigint[];
    orig_out  bigint[];
    s_bal     bigint[];
    s_in      bigint[];
    s_out     bigint[];
    prev_id   bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    prev_st   text[] := array_fill(NULL::text, ARRAY[n]);
    prev_same boolean[] := array_fill(NULL::boolean, ARRAY[n]);
    fresh     boolean[] := array_fill(false, ARRAY[n]);
    new_id    bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    dpa       bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    cpa       bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    r_prob    text[] := array_fill(NULL::text, ARRAY[n_req]);
    r_key     text[] := array_fill(NULL::text, ARRAY[n_req]);
    r_id      bigint[] := array_fill(NULL::bigint, ARRAY[n_req]);
    n_new     int := 0;
    n_events  int := 0;
    written   int;
    lo        int := 1;
    r         int;
    i         int;
    d         int;
    c         int;
    seq       regclass;
    rec       record;
BEGIN
    -- Set-based: every request is decided in memory on the locked balances, in order, then
    -- the whole batch is written with one INSERT per table and one UPDATE of the balances
    -- (each statement costs an executor start: per request they were most of the cost).
    FOR r IN 1..n_req LOOP
        FOR i IN lo..p_ends[r] LOOP
            owner[i] := r;
        END LOOP;
        lo := p_ends[r] + 1;
    END LOOP;
    -- A key twice in the batch: the caller posts the requests one by one (replay semantics).
    IF EXISTS (SELECT 1 FROM generate_subscripts(p_keys, 1) j
                GROUP BY p_tenants[owner[j]], p_keys[j] HAVING count(*) > 1) THEN
        RAISE EXCEPTION 'a key appears twice in one batch' USING ERRCODE = 'WL001';
    END IF;
    -- Lock every account touched, ascending id: concurrent flows serialise, never deadlock.
    SELECT array_agg(a.id), array_agg(a.tenant_id), array_agg(a.kind), array_agg(a.posted),
           array_agg(a.pending_in), array_agg(a.pending_out)
      INTO ids, tenants, kinds, bal, p_in, p_out
      FROM (SELECT ac.id, ac.tenant_id, ac.kind, ac.posted, ac.pending_in, ac.pending_out
              FROM accounts ac WHERE ac.id = ANY(p_debits || p_credits)
             ORDER BY ac.id FOR UPDATE) a;
    orig_p := bal; orig_in := p_in; orig_out := p_out;
    -- The keys already written (replays, or conflicts when the movement differs).
    FOR rec IN SELECT t.tenant_id, t.idempotency_key, t.id, t.state, t.debit_account_id,
                      t.credit_account_id, t.amount, t.currency
                 FROM transfers t
                WHERE t.tenant_id = ANY(p_tenants) AND t.idempotency_key = ANY(p_keys) LOOP
        FOREACH i IN ARRAY array_positions(p_keys, rec.idempotency_key) LOOP
            IF p_tenants[owner[i]] = rec.tenant_id THEN
                prev_id[i] := rec.id;
                prev_st[i] := rec.state;
                prev_same[i] := (rec.debit_account_id, rec.credit_account_id, rec.amount,
                                 rec.currency) IS NOT DISTINCT FROM
                                (p_debits[i], p_credits[i], p_amounts[i], p_currencies[i]);
            END IF;
        END LOOP;
    END LOOP;

    lo := 1;
    FOR r IN 1..n_req LOOP
        s_bal := bal; s_in := p_in; s_out := p_out;
        FOR i IN lo..p_ends[r] LOOP
            d := array_position(ids, p_debits[i]);
            c := array_position(ids, p_credits[i]);
            IF d IS NULL OR c IS NULL OR tenants[d] <> p_tenants[r]
               OR tenants[c] <> p_tenants[r] THEN
                r_prob[r] := 'race: an account is not visible yet';
                EXIT;
            END IF;
        END LOOP;
        IF r_prob[r] IS NULL THEN
            FOR i IN lo..p_ends[r] LOOP
                IF prev_id[i] IS NOT NULL THEN
                    IF NOT prev_same[i] THEN
                        r_prob[r] := 'conflict: idempotency key ' || p_keys[i]
                                     || ' was used for a different transfer';
                        r_key[r] := p_keys[i];
                        r_id[r] := prev_id[i];
                        EXIT;
                    END IF;
                    CONTINUE;
                END IF;
                d := array_position(ids, p_debits[i]);
                c := array_position(ids, p_credits[i]);
                IF kinds[d] IN ('user_wallet', 'user_points')
                   AND bal[d] - p_out[d] < p_amounts[i] THEN
                    r_prob[r] := 'insufficient_funds: available ' || (bal[d] - p_out[d])
                                 || ' < ' || p_amounts[i] || ' ' || p_currencies[i];
                    r_key[r] := p_keys[i];
                    EXIT;
                END IF;
                fresh[i] := true;
                IF p_pending[r] THEN
                    p_out[d] := p_out[d] + p_amounts[i];
                    p_in[c] := p_in[c] + p_amounts[i];
                ELSE
                    bal[d] := bal[d] - p_amounts[i];
                    bal[c] := bal[c] + p_amounts[i];
                    dpa[i] := bal[d];
                    cpa[i] := bal[c];
                END IF;
            END LOOP;
        END IF;
        IF r_prob[r] IS NOT NULL THEN  -- the request writes nothing
            bal := s_bal; p_in := s_in; p_out := s_out;
            FOR i IN lo..p_ends[r] LOOP
                fresh[i] := false;
            END LOOP;
        ELSE
            FOR i IN lo..p_ends[r] LOOP
                IF fresh[i] THEN
                    n_new := n_new + 1;
                END IF;
            END LOOP;
            n_events := n_events + jsonb_array_length(p_events -> (r - 1));
        END IF;
        lo := p_ends[r] + 1;
    END LOOP;

    IF n_new > 0 THEN
        -- Ids taken in batch order, so they are known without mapping RETURNING rows back.
        seq := pg_get_serial_sequence('transfers', 'id')::regclass;
        FOR i IN 1..n LOOP
            IF fresh[i] THEN
                new_id[i] := nextval(seq);
            END IF;
        END LOOP;
        INSERT INTO transfers (id, tenant_id, idempotency_key, debit_account_id,
                               credit_account_id, amount, currency, state, kind, flow_id,
                               metadata, debit_posted_after, credit_posted_after, resolved_at)
        SELECT new_id[j], p_tenants[owner[j]], p_keys[j], p_debits[j], p_credits[j],
               p_amounts[j], p_currencies[j],
               CASE WHEN p_pending[owner[j]] THEN 'pending' ELSE 'posted' END, p_kinds[j],
               p_flows[owner[j]], coalesce(p_metas[j], '{}')::jsonb, dpa[j], cpa[j],
               CASE WHEN p_pending[owner[j]] THEN NULL ELSE now() END
          FROM generate_subscripts(p_keys, 1) j WHERE fresh[j]
         ORDER BY j
        ON CONFLICT ON CONSTRAINT transfers_key_unique DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written <> n_new THEN
            RAISE EXCEPTION 'a concurrent writer used one of %', p_keys USING ERRCODE = 'WL001';
        END IF;
        UPDATE accounts a
           SET posted = a.posted + (v.p - v.op), pending_in = a.pending_in + (v.pi - v.opi),
               pending_out = a.pending_out + (v.po - v.opo)
          FROM unnest(ids, bal, orig_p, p_in, orig_in, p_out, orig_out)
               AS v(id, p, op, pi, opi, po, opo)
         WHERE a.id = v.id AND (v.p, v.pi, v.po) IS DISTINCT FROM (v.op, v.opi, v.opo);
    END IF;

    -- The business events of every request that was not refused, in request order.
    IF n_events > 0 THEN
        INSERT INTO outbox_events (tenant_id, event_key, type, payload)
        SELECT p_tenants[q], e->>'key', e->>'type', e->'payload'
          FROM generate_series(1, n_req) q,
               jsonb_array_elements(p_events -> (q - 1)) WITH ORDINALITY AS x(e, o)
         WHERE r_prob[q] IS NULL
         ORDER BY q, o
        ON CONFLICT DO NOTHING;
    END IF;

    lo := 1;
    FOR r IN 1..n_req LOOP
        IF r_prob[r] IS NOT NULL THEN
            request := r;
            idempotency_key := r_key[r];
            transfer_id := r_id[r];
            state := NULL;
            replayed := r_id[r] IS NOT NULL;
            problem := r_prob[r];
            RETURN NEXT;
        ELSE
            FOR i IN lo..p_ends[r] LOOP
                request := r;
                idempotency_key := p_keys[i];
                replayed := NOT fresh[i];
                problem := NULL;
                IF fresh[i] THEN
                    transfer_id := new_id[i];
                    state := CASE WHEN p_pending[r] THEN 'pending' ELSE 'posted' END;
                ELSE
                    transfer_id := prev_id[i];
                    state := prev_st[i];
                END IF;
                RETURN NEXT;
            END LOOP;
        END IF;
        lo := p_ends[r] + 1;
    END LOOP;
END
$$;
