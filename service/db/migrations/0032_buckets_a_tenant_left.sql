-- A bucket a tenant's storage moved away from is remembered with how it was reached: its
-- endpoint, region, SSE and the names of its credentials (never their values, as in
-- tenant_storage). Rows name a recording's or bundle's store by bucket only (s3://BUCKET,
-- 0012): once `tenant apply` changed or removed the tenant's storage, such a bucket was reached
-- with the tenant's current endpoint and credentials, or the shared store's. A tenant moving
-- from one provider to another thus left its old recordings unplayable and, at the end of
-- their retention, unpurgeable (the purge's delete reached the new provider, which has no such
-- bucket). StoreRegistry.for_object now looks here for a bucket the tenant no longer
-- configures. Kept by a trigger, so every path that changes tenant_storage keeps it; a bucket
-- the tenant takes up again is its current one (tenant_storage wins); offboarding removes the
-- rows with the tenant (ON DELETE CASCADE).

CREATE TABLE tenant_storage_former (
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bucket text NOT NULL,
    endpoint_url text,
    region text,
    sse text NOT NULL CHECK (sse IN ('AES256', 'aws:kms')),
    kms_key_id text,
    credentials jsonb NOT NULL CHECK (jsonb_typeof(credentials) = 'object'),
    left_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, bucket)
);

CREATE FUNCTION tenant_storage_keep_former() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.bucket = OLD.bucket THEN
        RETURN NULL;  -- the same bucket (its credentials rotated, say): nothing was left
    END IF;
    -- (a tenant being deleted takes its storage with it: nothing to remember)
    INSERT INTO tenant_storage_former AS f
        (tenant_id, bucket, endpoint_url, region, sse, kms_key_id, credentials)
    SELECT OLD.tenant_id, OLD.bucket, OLD.endpoint_url, OLD.region, OLD.sse, OLD.kms_key_id,
           OLD.credentials
    WHERE EXISTS (SELECT 1 FROM tenants AS t WHERE t.id = OLD.tenant_id)
    ON CONFLICT (tenant_id, bucket) DO UPDATE
    SET endpoint_url = EXCLUDED.endpoint_url, region = EXCLUDED.region, sse = EXCLUDED.sse,
        kms_key_id = EXCLUDED.kms_key_id, credentials = EXCLUDED.credentials, left_at = now();
    RETURN NULL;
END
$$;

CREATE TRIGGER tenant_storage_keep_former AFTER UPDATE OR DELETE ON tenant_storage
    FOR EACH ROW EXECUTE FUNCTION tenant_storage_keep_former();
