-- Seals become Merkle trees (RFC 6962) over a tenant's call chain heads, one chain of seals per
-- tenant; consent receipts are signed with a per-tenant Ed25519 key (service/receipts).
--
-- Format 1 rows (the single digest of every head, written before this migration, pre-tenancy
-- ones now in the tenant `default`) stay as they are and still verify: `heads_sha256` and
-- `calls` describe them. Format 2 rows carry the tree's `root` and `tree_size` (the number of
-- calls, also in `calls`) instead of `heads_sha256`.
ALTER TABLE ledger_seals
    ADD COLUMN format smallint NOT NULL DEFAULT 1 CHECK (format IN (1, 2)),
    ADD COLUMN root bytea CHECK (length(root) = 32),
    ADD COLUMN tree_size bigint CHECK (tree_size >= 0),
    ALTER COLUMN heads_sha256 DROP NOT NULL,
    ADD CONSTRAINT ledger_seals_format_fields CHECK (
        (format = 1 AND heads_sha256 IS NOT NULL AND root IS NULL AND tree_size IS NULL)
        OR (format = 2 AND heads_sha256 IS NULL AND root IS NOT NULL AND tree_size = calls)
    );

-- A tenant's seals form one chain: no two seals of a tenant may build on the same predecessor
-- (two replicas sealing at once cannot fork it), and a tenant's chain is read in id order.
CREATE UNIQUE INDEX ledger_seals_tenant_chain ON ledger_seals (tenant_id, prev_hash);
CREATE INDEX ledger_seals_tenant_id_idx ON ledger_seals (tenant_id, id);

-- Each tenant's receipt signing keys. The private key is stored encrypted under a key derived
-- from CALLVAULT_SECRET_KEY (bound to the tenant and key id); the public key stays readable for
-- ever, so receipts signed before a rotation still verify. One current key per tenant.
CREATE TABLE receipt_keys (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      text NOT NULL DEFAULT current_setting('callvault.tenant', true)
                   CONSTRAINT receipt_keys_tenant_id_fkey REFERENCES tenants (id),
    public_key     bytea NOT NULL CHECK (length(public_key) = 32),
    private_key_enc bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz
);
CREATE UNIQUE INDEX receipt_keys_one_current ON receipt_keys (tenant_id) WHERE retired_at IS NULL;
CREATE INDEX receipt_keys_tenant_idx ON receipt_keys (tenant_id, created_at);

CREATE POLICY tenant_isolation ON receipt_keys
    USING (tenant_id = current_setting('callvault.tenant', true)
           OR current_setting('callvault.tenant', true) = '*')
    WITH CHECK (tenant_id = current_setting('callvault.tenant', true)
           OR current_setting('callvault.tenant', true) = '*');
ALTER TABLE receipt_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE receipt_keys FORCE ROW LEVEL SECURITY;

-- Keys are never deleted (old receipts must stay verifiable); only `retired_at` is ever set.
CREATE FUNCTION receipt_keys_only_retire() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'receipt keys are kept for ever (retire them instead)'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.id <> OLD.id OR NEW.tenant_id <> OLD.tenant_id OR NEW.public_key <> OLD.public_key
       OR NEW.created_at <> OLD.created_at
       OR (OLD.retired_at IS NOT NULL AND NEW.retired_at IS DISTINCT FROM OLD.retired_at) THEN
        RAISE EXCEPTION 'a receipt key changes only by being retired or re-encrypted'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER receipt_keys_only_retire BEFORE UPDATE OR DELETE ON receipt_keys
    FOR EACH ROW EXECUTE FUNCTION receipt_keys_only_retire();
