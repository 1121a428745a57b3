-- An access-bundle run's announced upload (0028) names the store it goes to beside its key: a
-- map of key -> store reference ('shared' or 's3://BUCKET', checked as bundle_store and
-- recordings.object_store are). Before, only the key was listed, and every reader (the run
-- that completes the request, an erasure of the number, the purge, offboarding) deleted it from
-- the tenant's store of the moment: after a tenant's storage moved to another bucket, an upload
-- left in the old one was looked for in the new one (where its delete "succeeds") and stayed,
-- a copy of a person's data no row named.
--
-- Keys listed today were uploaded to their tenant's store of today (no run outlives a storage
-- change by much): each gets that store's reference. Every tenant's rows, whatever role runs
-- it: row-level security binds a table's owner too.

SELECT set_config('callvault.tenant', '*', true);

ALTER TABLE dsar_requests RENAME COLUMN bundle_uploads TO bundle_uploads_keys;
ALTER TABLE dsar_requests ADD COLUMN bundle_uploads jsonb NOT NULL DEFAULT '{}'
    CONSTRAINT dsar_requests_bundle_uploads_check CHECK (
        jsonb_typeof(bundle_uploads) = 'object'
        AND NOT jsonb_path_exists(
            bundle_uploads,
            '$.* ? (@.type() != "string"
                    || !(@ like_regex "^(shared|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])$"))'
        )
    );

UPDATE dsar_requests AS d
SET bundle_uploads = (
    SELECT jsonb_object_agg(k, coalesce('s3://' || s.bucket, 'shared'))
    FROM unnest(d.bundle_uploads_keys) AS k
    LEFT JOIN tenant_storage AS s ON s.tenant_id = d.tenant_id
)
WHERE d.bundle_uploads_keys <> '{}';

ALTER TABLE dsar_requests DROP COLUMN bundle_uploads_keys;
