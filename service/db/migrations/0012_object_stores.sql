-- Which object store holds each stored object (issue 13 item 6): 'shared' (the deployment's
-- bucket or local folder, CALLVAULT_S3_*) or a tenant's own bucket, 's3://BUCKET'. The key
-- columns keep the full bucket-relative key (a tenant on the shared bucket writes under
-- tenants/{id}/), so key + store find the object whatever the tenant's storage is later changed
-- to. Every object written before this migration is in the shared store under the key recorded.
ALTER TABLE recordings
    ADD COLUMN object_store text NOT NULL DEFAULT 'shared'
        CONSTRAINT recordings_object_store_check
        CHECK (object_store = 'shared' OR object_store ~ '^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$');
ALTER TABLE dsar_requests
    ADD COLUMN bundle_store text NOT NULL DEFAULT 'shared'
        CONSTRAINT dsar_requests_bundle_store_check
        CHECK (bundle_store = 'shared' OR bundle_store ~ '^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$');
