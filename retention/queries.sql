-- name: claim_expired
-- Expired, stored, and under no active hold (on the call or on the caller's number). Rows are
-- locked until the purge commits; another replica's purge skips them.
SELECT r.id, r.call_id, r.object_key, r.retain_until
FROM recordings r
JOIN calls c ON c.id = r.call_id
WHERE r.state = 'stored' AND r.retain_until <= now()
  AND NOT EXISTS (
      SELECT 1 FROM holds h
      WHERE h.released_at IS NULL
        AND (h.call_id = r.call_id OR (h.phone_hash IS NOT NULL AND h.phone_hash = c.caller_hash)))
ORDER BY r.retain_until, r.id
LIMIT $1
FOR UPDATE OF r SKIP LOCKED;

-- name: list_expired
SELECT r.id, r.call_id, r.retain_until,
       EXISTS (SELECT 1 FROM holds h
               WHERE h.released_at IS NULL
                 AND (h.call_id = r.call_id
                      OR (h.phone_hash IS NOT NULL AND h.phone_hash = c.caller_hash))) AS held
FROM recordings r JOIN calls c ON c.id = r.call_id
WHERE r.state = 'stored' AND r.retain_until <= now()
ORDER BY r.retain_until, r.id
LIMIT $1;

-- name: held_among
-- A second look in a fresh snapshot, after the rows are locked: a hold committed between the
-- claim's snapshot and its lock is seen here.
SELECT r.id FROM recordings r JOIN calls c ON c.id = r.call_id
WHERE r.id = ANY($1::uuid[])
  AND EXISTS (
      SELECT 1 FROM holds h
      WHERE h.released_at IS NULL
        AND (h.call_id = r.call_id OR (h.phone_hash IS NOT NULL AND h.phone_hash = c.caller_hash)));

-- name: mark_purged
UPDATE recordings SET state = 'purged', purged_at = now()
WHERE id = ANY($1::uuid[]) AND state = 'stored';

-- name: insert_hold
INSERT INTO holds (call_id, phone_hash, phone_enc, reason, case_ref, placed_by)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, placed_at;

-- name: lock_recordings_of_call
SELECT id, call_id, state FROM recordings WHERE call_id = $1 ORDER BY id FOR UPDATE;

-- name: lock_recordings_of_phone
SELECT r.id, r.call_id, r.state FROM recordings r JOIN calls c ON c.id = r.call_id
WHERE c.caller_hash = ANY($1::bytea[]) ORDER BY r.id FOR UPDATE OF r;

-- name: calls_of_phone
SELECT id FROM calls WHERE caller_hash = ANY($1::bytea[]) ORDER BY started_at, id;

-- name: call_exists
SELECT EXISTS (SELECT 1 FROM calls WHERE id = $1);

-- name: release_hold
UPDATE holds SET released_at = now(), released_by = $2
WHERE id = $1 AND released_at IS NULL
RETURNING id, call_id, phone_hash;

-- name: hold_by_id
SELECT id, call_id, phone_hash IS NOT NULL AS on_phone, reason, case_ref, placed_by, placed_at,
       released_by, released_at
FROM holds WHERE id = $1;

-- name: list_holds
SELECT id, call_id, phone_hash IS NOT NULL AS on_phone, reason, case_ref, placed_by, placed_at,
       released_by, released_at
FROM holds WHERE ($1 OR released_at IS NULL) ORDER BY placed_at DESC, id LIMIT $2;

-- name: active_holds_count
SELECT count(*) FROM holds WHERE released_at IS NULL;

-- name: insert_request
INSERT INTO dsar_requests (kind, phone_hash, phone_enc, requested_by, due_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
RETURNING id;

-- name: request_by_id
SELECT id, kind, status, phone_hash, phone_enc, requested_by, received_at, due_at,
       completed_at, bundle_key, result
FROM dsar_requests WHERE id = $1;

-- name: set_request_status
UPDATE dsar_requests SET status = $2, result = $3,
    completed_at = CASE WHEN $2 = 'completed' THEN now() END,
    bundle_key = coalesce($4, bundle_key)
WHERE id = $1;

-- name: forget_request_phone
UPDATE dsar_requests SET phone_hash = NULL, phone_enc = NULL WHERE id = $1;

-- name: request_counts
SELECT count(*) FILTER (WHERE status <> 'completed') AS open,
       count(*) FILTER (WHERE status <> 'completed' AND due_at < now()) AS overdue
FROM dsar_requests;

-- name: erasable_recordings_of_call
-- The call's recordings that no active hold covers, locked for the erasure.
SELECT r.id, r.object_key, r.state FROM recordings r JOIN calls c ON c.id = r.call_id
WHERE r.call_id = $1
ORDER BY r.id
FOR UPDATE OF r;

-- name: call_is_held
SELECT EXISTS (
    SELECT 1 FROM holds h JOIN calls c ON c.id = $1
    WHERE h.released_at IS NULL
      AND (h.call_id = c.id OR (h.phone_hash IS NOT NULL AND h.phone_hash = c.caller_hash)));

-- name: mark_erased
UPDATE recordings SET state = 'erased', purged_at = now()
WHERE id = ANY($1::uuid[]) AND state IN ('stored', 'pending', 'failed');

-- name: destroy_call_phone
UPDATE calls SET caller_enc = NULL, caller_hash = NULL WHERE id = $1;

-- name: call_for_bundle
SELECT id, platform, external_id, called, started_at, ended_at, outcome, outcome_at
FROM calls WHERE id = $1;

-- name: recordings_for_bundle
SELECT id, state, object_key, sha256, size_bytes, content_type, duration_s, stored_at,
       retain_until
FROM recordings WHERE call_id = $1 ORDER BY created_at, id;

-- name: list_upcoming
-- Stored recordings not yet due, soonest first, with the time left by the database's clock.
SELECT r.id, r.call_id, r.retain_until, r.retain_until - now() AS time_left,
       EXISTS (SELECT 1 FROM holds h
               WHERE h.released_at IS NULL
                 AND (h.call_id = r.call_id
                      OR (h.phone_hash IS NOT NULL AND h.phone_hash = c.caller_hash))) AS held
FROM recordings r JOIN calls c ON c.id = r.call_id
WHERE r.state = 'stored' AND r.retain_until > now()
ORDER BY r.retain_until, r.id
LIMIT $1;
