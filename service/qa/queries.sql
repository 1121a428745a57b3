-- name: search_calls
-- Newest first, keyset-paginated on (started_at, id) so pages stay stable while calls arrive.
-- A request acts for one tenant, named again here in a form the indexes of migration 0026 can
-- use (row-level security's own predicate, tenant = setting OR setting = '*', cannot).
SELECT c.id, c.platform, c.external_id, c.started_at, c.caller_enc, c.called, c.direction,
       c.outcome, c.policy->>'queue' AS queue
FROM calls c
WHERE c.tenant_id = current_setting('callvault.tenant', true)
  AND ($1::timestamptz IS NULL OR c.started_at >= $1)
  AND ($2::timestamptz IS NULL OR c.started_at < $2)
  AND ($3::text IS NULL OR c.outcome = $3)
  AND ($4::text IS NULL OR c.external_id = $4)
  AND ($5::text IS NULL OR c.policy->>'queue' = $5)
  AND ($6::timestamptz IS NULL OR (c.started_at, c.id) < ($6, $7::uuid))
ORDER BY c.started_at DESC, c.id DESC
LIMIT $8;

-- name: call_by_id
SELECT c.id, c.platform, c.external_id, c.started_at, c.caller_enc, c.called, c.direction,
       c.outcome, c.policy->>'queue' AS queue
FROM calls c WHERE c.id = $1;

-- name: recordings_of_calls
SELECT r.id, r.call_id, r.state, r.duration_s, r.retain_until,
       -- a hold keeps what exists: a purged or erased recording is not "held"
       r.state IN ('stored', 'pending') AND EXISTS (SELECT 1 FROM holds h
               WHERE h.released_at IS NULL
                 AND (h.call_id = r.call_id
                      OR (h.phone_hash IS NOT NULL AND h.phone_hash = c.caller_hash))) AS held
FROM recordings r JOIN calls c ON c.id = r.call_id
WHERE r.call_id = ANY($1::uuid[])
ORDER BY r.created_at, r.id;

-- name: recording_for_playback
SELECT id, call_id, state, object_key, object_store, content_type FROM recordings
WHERE id = $1;

-- name: tenant_name
-- tenants are the operator's configuration (no row-level security): named by id only
SELECT name FROM tenants WHERE id = $1;
