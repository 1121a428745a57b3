-- Two corrections to where uncommitted uploads are looked for (0029, 0030), from an outside
-- review.
--
-- 1. 0029 gave every access-bundle upload it found listed its tenant's store of that day. A
-- key under the shared store's prefix of the tenant, tenants/{id}/, can only have gone to the
-- shared store (a tenant's own bucket has no prefix): listed as the own bucket's, the key was
-- deleted there, where it never was, and the copy in the shared store stayed. Such keys name
-- the shared store again (keys the service announces since 0029 name their store as uploaded).
--
-- 2. An intake attempt that cannot delete an earlier attempt's upload in a store the tenant
-- left (down, its credentials revoked) keeps that store named (upload_store) and uploads to the
-- tenant's store of today: the row commits with object_store elsewhere. The purge deletes what
-- may be left in upload_store for such rows (claim_left_recording_uploads); this index keeps
-- that look cheap, the rows being rare among millions.

SELECT set_config('callvault.tenant', '*', true);

UPDATE dsar_requests AS d
SET bundle_uploads = (
    SELECT jsonb_object_agg(
        e.key,
        CASE WHEN starts_with(e.key, 'tenants/' || d.tenant_id || '/') THEN '"shared"'::jsonb
             ELSE e.value END
    )
    FROM jsonb_each(d.bundle_uploads) AS e
)
WHERE EXISTS (
    SELECT 1 FROM jsonb_each_text(d.bundle_uploads) AS e
    WHERE starts_with(e.key, 'tenants/' || d.tenant_id || '/') AND e.value <> 'shared'
);

CREATE INDEX recordings_left_uploads ON recordings (tenant_id, id)
    WHERE upload_store IS NOT NULL AND upload_store IS DISTINCT FROM object_store
      AND state <> 'pending';
