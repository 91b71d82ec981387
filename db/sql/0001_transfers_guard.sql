-- Posted and voided transfers are immutable; a pending one may only be resolved once.
-- Nothing is ever deleted.
CREATE FUNCTION transfers_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger transfers cannot be deleted (id %)', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.state <> 'pending' THEN
        RAISE EXCEPTION 'transfer % is % and immutable', OLD.id, OLD.state
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.state NOT IN ('posted', 'voided')
       OR NEW.id <> OLD.id OR NEW.tenant_id <> OLD.tenant_id
       OR NEW.idempotency_key <> OLD.idempotency_key
       OR NEW.debit_account_id <> OLD.debit_account_id
       OR NEW.credit_account_id <> OLD.credit_account_id
       OR NEW.amount <> OLD.amount OR NEW.currency <> OLD.currency
       OR NEW.kind <> OLD.kind OR NEW.flow_id IS DISTINCT FROM OLD.flow_id
       OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'a pending transfer may only change state to posted or voided (id %)',
            OLD.id USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER transfers_guard BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION transfers_guard();
CREATE FUNCTION transfers_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger cannot be truncated' USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION transfers_no_truncate();
