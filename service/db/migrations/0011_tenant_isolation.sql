-- Every tenant-owned row carries its tenant, and PostgreSQL enforces the isolation: row-level
-- security, FORCEd so that it binds the tables' owner too, with one policy per table on the
-- per-transaction setting `callvault.tenant`. A row is visible and writable when its tenant_id
-- equals the setting; the value '*' is the system's own cross-tenant work (job claiming, the
-- token lookup by hash, metrics figures, migrations); an unset setting sees nothing.
--
-- Existing rows belong to the tenant 'default'. New rows take the tenant of the transaction:
-- the column default is the setting itself, so a writer that forgot it (NULL), or wrote as '*',
-- is refused (NOT NULL / no such tenant) instead of landing in some tenant.

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'calls', 'ledger_events', 'ledger_seals', 'recordings', 'recording_callbacks',
        'recording_reconciliations', 'jobs', 'holds', 'dsar_requests', 'api_tokens',
        'audit_log', 'do_not_record'
    ] LOOP
        EXECUTE format(
            'ALTER TABLE %I ADD COLUMN tenant_id text NOT NULL DEFAULT ''default'''
            ' CONSTRAINT %I REFERENCES tenants (id)', t, t || '_tenant_id_fkey');
        EXECUTE format(
            'ALTER TABLE %I ALTER COLUMN tenant_id SET DEFAULT current_setting(''callvault.tenant'', true)', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I'
            ' USING (tenant_id = current_setting(''callvault.tenant'', true)'
            '        OR current_setting(''callvault.tenant'', true) = ''*'')'
            ' WITH CHECK (tenant_id = current_setting(''callvault.tenant'', true)'
            '        OR current_setting(''callvault.tenant'', true) = ''*'')', t);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    END LOOP;
END
$$;

-- Platform tokens (created with --tenant '*') belong to no tenant: NULL, visible only to '*';
-- so do the audit entries of the platform's own actions (creating or revoking such a token).
-- The policies still refuse a NULL row to anyone but '*' (NULL = setting is never true).
ALTER TABLE api_tokens ALTER COLUMN tenant_id DROP NOT NULL;
ALTER TABLE audit_log ALTER COLUMN tenant_id DROP NOT NULL;

-- A row about a call belongs to the call's tenant, whoever writes it: the system's passes run
-- as '*' and a tenant must not attach rows to another tenant's call (the foreign key check
-- alone would let it, since it does not go through row-level security). The call is looked up
-- under the writer's own visibility, so an invisible call leaves tenant_id NULL: refused.
CREATE FUNCTION tenant_of_call() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.call_id IS NOT NULL THEN
        NEW.tenant_id := (SELECT c.tenant_id FROM calls AS c WHERE c.id = NEW.call_id);
        IF NEW.tenant_id IS NULL THEN
            RAISE EXCEPTION 'call % is not visible to tenant %', NEW.call_id,
                coalesce(current_setting('callvault.tenant', true), '(unset)')
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER ledger_events_tenant BEFORE INSERT ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION tenant_of_call();
CREATE TRIGGER recordings_tenant BEFORE INSERT ON recordings
    FOR EACH ROW EXECUTE FUNCTION tenant_of_call();
CREATE TRIGGER recording_reconciliations_tenant BEFORE INSERT ON recording_reconciliations
    FOR EACH ROW EXECUTE FUNCTION tenant_of_call();
CREATE TRIGGER holds_tenant BEFORE INSERT ON holds
    FOR EACH ROW EXECUTE FUNCTION tenant_of_call();

-- Names and never-record lists are each tenant's own.
DROP INDEX api_tokens_name_key;
-- (platform tokens, tenant_id NULL, share one namespace; an expression, for PostgreSQL 13)
CREATE UNIQUE INDEX api_tokens_name_key ON api_tokens ((coalesce(tenant_id, '*')), name);
ALTER TABLE do_not_record DROP CONSTRAINT do_not_record_pkey;
ALTER TABLE do_not_record ADD CONSTRAINT do_not_record_pkey PRIMARY KEY (tenant_id, phone_hash);

-- Lists a tenant reads most start from its tenant.
CREATE INDEX calls_tenant_started_at_idx ON calls (tenant_id, started_at);
CREATE INDEX dsar_requests_tenant_idx ON dsar_requests (tenant_id);
CREATE INDEX holds_tenant_idx ON holds (tenant_id);
CREATE INDEX audit_log_tenant_at_idx ON audit_log (tenant_id, at);

-- (The role `operator` of platform tokens was allowed by 0010.)
