-- A pause or resume under way at the platform (issue 17): claimed in one short transaction,
-- the platform asked with no connection held, then the ledger event written and the claim
-- deleted in a second. The primary key makes a second pause or resume of the same call, from any
-- replica, find the claim and answer 409 instead of asking the platform again. A claim older
-- than the platform's timeout (a replica that died mid-request) no longer counts.
CREATE TABLE pause_claims (
    call_id     uuid PRIMARY KEY
                CONSTRAINT pause_claims_call_id_fkey REFERENCES calls (id) ON DELETE CASCADE,
    tenant_id   text NOT NULL DEFAULT current_setting('callvault.tenant', true)
                CONSTRAINT pause_claims_tenant_id_fkey REFERENCES tenants (id),
    action      text NOT NULL CHECK (action IN ('pause', 'resume')),
    token       uuid NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE POLICY tenant_isolation ON pause_claims
    USING (tenant_id = current_setting('callvault.tenant', true)
           OR current_setting('callvault.tenant', true) = '*')
    WITH CHECK (tenant_id = current_setting('callvault.tenant', true)
           OR current_setting('callvault.tenant', true) = '*');
ALTER TABLE pause_claims ENABLE ROW LEVEL SECURITY;
ALTER TABLE pause_claims FORCE ROW LEVEL SECURITY;
