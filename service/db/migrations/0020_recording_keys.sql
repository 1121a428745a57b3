-- Each recording's own data key (issue 17): a Tink streaming-AEAD keyset, stored only wrapped
-- by the tenant's key-encryption key (derived from CALLVAULT_SECRET_KEY per tenant). Purge and
-- erasure delete the row before the objects (ledger: key_destroyed): every copy of the object
-- that survives (old versions, replicas, backups) is then unreadable. `kek_id` names the
-- key-encryption key that wrapped it, so `callvault secrets rotate` finds what to re-wrap.
CREATE TABLE recording_keys (
    recording_id   uuid PRIMARY KEY
                   CONSTRAINT recording_keys_recording_id_fkey REFERENCES recordings (id)
                   ON DELETE CASCADE,
    tenant_id      text NOT NULL DEFAULT current_setting('callvault.tenant', true)
                   CONSTRAINT recording_keys_tenant_id_fkey REFERENCES tenants (id),
    format         text NOT NULL CHECK (format = 'tink-streaming-v1'),
    wrapped_key    bytea NOT NULL,
    kek_id         bytea NOT NULL CHECK (length(kek_id) = 8),
    key_version    integer NOT NULL DEFAULT 1 CHECK (key_version >= 1),
    created_at     timestamptz NOT NULL DEFAULT now(),
    rewrapped_at   timestamptz
);
CREATE INDEX recording_keys_tenant_kek_idx ON recording_keys (tenant_id, kek_id);

-- a data key belongs to its recording's tenant, whatever the inserting session says
CREATE FUNCTION tenant_of_recording() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.tenant_id := (SELECT tenant_id FROM recordings WHERE id = NEW.recording_id);
    IF NEW.tenant_id IS NULL THEN
        RAISE EXCEPTION 'recording % is not visible to tenant %', NEW.recording_id,
            coalesce(current_setting('callvault.tenant', true), '(unset)')
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER recording_keys_tenant BEFORE INSERT ON recording_keys
    FOR EACH ROW EXECUTE FUNCTION tenant_of_recording();

CREATE POLICY tenant_isolation ON recording_keys
    USING (tenant_id = current_setting('callvault.tenant', true)
           OR current_setting('callvault.tenant', true) = '*')
    WITH CHECK (tenant_id = current_setting('callvault.tenant', true)
           OR current_setting('callvault.tenant', true) = '*');
ALTER TABLE recording_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE recording_keys FORCE ROW LEVEL SECURITY;
