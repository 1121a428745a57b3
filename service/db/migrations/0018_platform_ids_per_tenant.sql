-- A platform's call and recording ids are unique within a tenant, not across tenants. Each
-- tenant may bring its own platform project (its own Stringee project, Twilio subaccount or
-- PBX), and nothing stops two projects from using the same id. A global key let one tenant's
-- row block another's: under row-level security the other tenant's row is invisible, so
-- `ON CONFLICT DO NOTHING` skipped the insert and the follow-up lookup found nothing (a 500
-- that also told the caller the id exists), a tenant could pre-claim ids to break another's
-- calls, and a callback for another tenant's recording id made the real one look like a
-- duplicate. Job dedupe keys (they name a platform's recording id) are per tenant likewise.
--
-- tenant_id comes last in each key so that lookups by (platform, external_id) under a
-- tenant's visibility keep using the index's leading columns.

ALTER TABLE calls DROP CONSTRAINT calls_platform_external_id_key;
ALTER TABLE calls ADD CONSTRAINT calls_platform_external_id_tenant_key
    UNIQUE (platform, external_id, tenant_id);

ALTER TABLE recordings DROP CONSTRAINT recordings_platform_external_id_key;
ALTER TABLE recordings ADD CONSTRAINT recordings_platform_external_id_tenant_key
    UNIQUE (platform, external_id, tenant_id);

ALTER TABLE recording_callbacks DROP CONSTRAINT recording_callbacks_pkey;
ALTER TABLE recording_callbacks ADD CONSTRAINT recording_callbacks_pkey
    PRIMARY KEY (platform, recording_sid, status, tenant_id);

ALTER TABLE jobs DROP CONSTRAINT jobs_dedupe_key_key;
ALTER TABLE jobs ADD CONSTRAINT jobs_dedupe_key_tenant_key UNIQUE (dedupe_key, tenant_id);
