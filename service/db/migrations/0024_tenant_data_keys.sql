-- A tenant's own KMS key (issue 17): where configured, each recording's data key is wrapped by
-- it (KMS Encrypt, with an encryption context naming the tenant and the recording) instead of
-- the key derived from CALLVAULT_SECRET_KEY. Credentials are references, never values.
CREATE TABLE tenant_data_keys (
    tenant_id    text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    kms_key_id   text NOT NULL CHECK (kms_key_id <> ''),
    endpoint_url text,
    region       text,
    credentials  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(credentials) = 'object'),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Which wrapper wrapped each data key, so that reading and `secrets rotate` know: `derived`
-- (kek_id: the fingerprint of the derived key) or `kms` (kms_key_arn: the key KMS says it
-- used; kek_id: the fingerprint of that ARN).
ALTER TABLE recording_keys
    ADD COLUMN wrapper text NOT NULL DEFAULT 'derived'
        CONSTRAINT recording_keys_wrapper_check CHECK (wrapper IN ('derived', 'kms')),
    ADD COLUMN kms_key_arn text,
    ADD CONSTRAINT recording_keys_kms_arn_check CHECK ((wrapper = 'kms') = (kms_key_arn IS NOT NULL));

-- An access bundle asked for sealed: its audio as stored (ciphertext) with each data key
-- wrapped by the tenant's own KMS key, instead of plaintext audio (only a tenant on a KMS key).
ALTER TABLE dsar_requests
    ADD COLUMN bundle_sealed boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT dsar_requests_bundle_sealed_check CHECK (NOT bundle_sealed OR kind = 'access');
