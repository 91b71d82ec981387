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
