-- name: insert_callback
INSERT INTO recording_callbacks (platform, recording_sid, status, call_sid)
VALUES ($1, $2, $3, $4)
ON CONFLICT (platform, recording_sid, status, tenant_id) DO NOTHING
RETURNING recording_sid;

-- name: call_by_external_id
SELECT id, outcome, policy, ended_at FROM calls WHERE platform = $1 AND external_id = $2;

-- name: ensure_recording
INSERT INTO recordings (call_id, platform, external_id, duration_s)
VALUES ($1, $2, $3, $4)
ON CONFLICT (platform, external_id, tenant_id) DO NOTHING;

-- name: recording_by_external_id
SELECT id, call_id, state, object_key, sha256, platform_deleted_at, upload_store
FROM recordings WHERE platform = $1 AND external_id = $2;

-- name: mark_stored
UPDATE recordings
SET state = 'stored', object_key = $2, sha256 = $3, size_bytes = $4, content_type = $5,
    stored_at = now(), retain_until = now() + make_interval(secs => $6), object_version = $7,
    object_store = $8,
    retention_source = $9
WHERE id = $1 AND state = 'pending'
RETURNING retain_until;

-- name: mark_platform_deleted
UPDATE recordings SET platform_deleted_at = now()
WHERE id = $1 AND platform_deleted_at IS NULL;

-- name: call_for_intake
-- Locked (as the ledger append in the same transaction would lock it anyway): an erasure of the
-- call waits for this decision to commit and then sees its recording row; a decision taken
-- after an erasure sees the call erased.
SELECT id, outcome, policy, ended_at, erased_at, platform_account FROM calls
WHERE platform = $1 AND external_id = $2
FOR UPDATE;

-- name: recording_state
SELECT state FROM recordings WHERE id = $1;

-- name: announce_first_upload
-- The common case in one round trip: a pending row naming no store yet (a first attempt) names
-- $2. Returns the store the row names now: $2, or the one the last attempt's upload went to
-- (migration 0030); no row once no longer pending.
WITH named AS (
    UPDATE recordings SET upload_store = $2
    WHERE id = $1 AND state = 'pending' AND upload_store IS NULL
    RETURNING upload_store
)
SELECT upload_store FROM named
UNION ALL
SELECT upload_store FROM recordings
WHERE id = $1 AND state = 'pending' AND NOT EXISTS (SELECT FROM named);

-- name: announce_upload
-- Over the name this attempt read ($3) and deleted from, while still pending: an erasure in
-- between (it deleted in both stores) leaves the row as it made it.
UPDATE recordings SET upload_store = $2
WHERE id = $1 AND state = 'pending' AND upload_store IS NOT DISTINCT FROM $3;

-- name: lock_recording_stores
-- What a row names for its objects, locked while an attempt that lost its lease decides
-- whether its upload stays: no attempt names another store meanwhile.
SELECT state, upload_store, object_store, object_key FROM recordings WHERE id = $1 FOR UPDATE;
