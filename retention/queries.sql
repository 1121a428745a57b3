-- name: claim_expired
-- Exactly the recordings whose explanation (recording_retention(), migration 0017) has
-- purge_at <= now(): stored, expired, and kept by nothing in recording_keepers() (no active hold,
-- no open access, correct or restrict request), written so that PostgreSQL anti-joins the
-- keepers instead of asking about each recording. Rows are locked until the purge commits;
-- another replica's purge skips them.
SELECT r.id, r.call_id, r.object_key, r.retain_until
FROM recordings r
WHERE r.state = 'stored' AND r.retain_until <= now()
  AND NOT EXISTS (SELECT 1 FROM recording_keepers() k WHERE k.recording_id = r.id)
ORDER BY r.retain_until, r.id
LIMIT $1
FOR UPDATE OF r SKIP LOCKED;

-- name: explain_recording
SELECT e.*, now() AS now FROM recording_retention() e WHERE e.id = $1;

-- name: explain_expired
-- What a purge would take now, and what keeps the rest (`callvault purge --dry-run`).
SELECT e.*, now() AS now FROM recording_retention() e
WHERE e.state = 'stored' AND e.retain_until <= now()
ORDER BY e.retain_until, e.id
LIMIT $1;

-- name: explain_upcoming
-- Stored recordings not yet due, soonest first, with the time left by the database's clock.
SELECT e.*, now() AS now, e.retain_until - now() AS time_left FROM recording_retention() e
WHERE e.state = 'stored' AND e.retain_until > now()
ORDER BY e.retain_until, e.id
LIMIT $1;

-- name: kept_among
-- A second look in a fresh snapshot, after the rows are locked: a hold or request committed
-- between the claim's snapshot and its lock is seen here.
SELECT DISTINCT k.recording_id AS id FROM recording_keepers() k
WHERE k.recording_id = ANY($1::uuid[]);

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
SELECT id, call_id, call_id IS NULL AS on_phone, reason, case_ref, placed_by, placed_at,
       released_by, released_at
FROM holds WHERE id = $1;

-- name: list_holds
SELECT id, call_id, call_id IS NULL AS on_phone, reason, case_ref, placed_by, placed_at,
       released_by, released_at
FROM holds WHERE ($1 OR released_at IS NULL) ORDER BY placed_at DESC, id LIMIT $2;

-- name: insert_request
INSERT INTO dsar_requests (kind, phone_hash, phone_enc, requested_by, due_at, subject_digest)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), $6)
RETURNING id;

-- name: request_by_id
SELECT id, kind, status, phone_hash, phone_enc, requested_by, received_at, due_at,
       completed_at, bundle_key, result, bundle_expires_at, bundle_removed_at,
       bundle_removed_reason
FROM dsar_requests WHERE id = $1;

-- name: set_request_status
UPDATE dsar_requests SET status = $2, result = $3,
    completed_at = CASE WHEN $2 = 'completed' THEN now() END,
    bundle_key = coalesce($4, bundle_key)
WHERE id = $1;

-- name: forget_request_phone
-- The request keeps only its receipt digest ($2) of the number, for holds placed later.
UPDATE dsar_requests SET phone_hash = NULL, phone_enc = NULL, subject_digest = $2 WHERE id = $1;

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

-- name: call_for_bundle
SELECT id, platform, external_id, direction, called, started_at, ended_at, outcome, outcome_at
FROM calls WHERE id = $1;

-- name: recordings_for_bundle
SELECT id, state, object_key, sha256, size_bytes, content_type, duration_s, stored_at,
       retain_until
FROM recordings WHERE call_id = $1 ORDER BY created_at, id;

-- name: lock_call_for_erasure
-- Taken after the call's recordings (the order holds, purges and intake commits take them in)
-- and before reading them again: an intake deciding to keep a recording holds the call locked
-- until its recording row is committed, so the erasure either sees that row or the intake
-- waits and then sees the call erased. The same lock the ledger takes to append.
SELECT id, erased_at FROM calls WHERE id = $1 FOR UPDATE;

-- name: mark_call_erased
UPDATE calls SET caller_enc = NULL, caller_hash = NULL,
    erased_at = coalesce(erased_at, now()), erased_by = coalesce(erased_by, $2)
WHERE id = $1;

-- name: calls_erased_by
SELECT id FROM calls WHERE erased_by = $1 ORDER BY started_at, id;

-- name: intake_running_for_calls
-- Recording jobs of these calls that are queued or running: an erasure completes only after
-- they have ended (each one discards, or deletes what it uploaded, once it sees the erasure).
SELECT count(*) FROM jobs j
JOIN calls c ON c.platform = j.payload->>'platform' AND c.external_id = j.payload->>'call_sid'
WHERE j.kind = 'recording' AND j.state IN ('queued', 'running') AND c.id = ANY($1::uuid[]);

-- name: lock_other_requests_of_phone
-- Every other request of the number, of any kind and status, locked while its number is
-- cleared and its bundle deleted (an access job committing meanwhile waits, then sees it).
SELECT id, kind, status, bundle_key FROM dsar_requests
WHERE phone_hash = ANY($1::bytea[]) AND id <> $2
ORDER BY id
FOR UPDATE;

-- name: supersede_access_request
UPDATE dsar_requests SET status = 'completed', completed_at = now(),
    result = jsonb_build_object('calls', 0, 'superseded_by_erasure', $2::text),
    phone_hash = NULL, phone_enc = NULL, bundle_key = NULL,
    bundle_removed_at = CASE WHEN bundle_key IS NOT NULL THEN now() END,
    bundle_removed_reason = CASE WHEN bundle_key IS NOT NULL THEN 'erased' END
WHERE id = $1;

-- name: erase_request_phone_and_bundle
UPDATE dsar_requests SET phone_hash = NULL, phone_enc = NULL, bundle_key = NULL,
    bundle_removed_at = CASE WHEN bundle_key IS NOT NULL THEN now() ELSE bundle_removed_at END,
    bundle_removed_reason = CASE WHEN bundle_key IS NOT NULL THEN 'erased'
                                 ELSE bundle_removed_reason END
WHERE id = $1;

-- name: forget_released_holds_of_phone
-- Active holds keep the number (they are a legal obligation); finished ones forget it.
UPDATE holds SET phone_hash = NULL, phone_enc = NULL
WHERE phone_hash = ANY($1::bytea[]) AND released_at IS NOT NULL;

-- name: lock_request
SELECT id, status, phone_enc FROM dsar_requests WHERE id = $1 FOR UPDATE;

-- name: complete_access_request
UPDATE dsar_requests SET status = 'completed', completed_at = now(), result = $2,
    bundle_key = $3, bundle_expires_at = now() + make_interval(secs => $4)
WHERE id = $1
RETURNING bundle_expires_at;

-- name: bundle_of_request
-- The bundle's state by the database's clock.
SELECT bundle_key, bundle_removed_reason,
       bundle_key IS NOT NULL AND bundle_expires_at <= now() AS bundle_expired
FROM dsar_requests WHERE id = $1;

-- name: claim_expired_bundles
SELECT id, bundle_key, bundle_expires_at FROM dsar_requests
WHERE bundle_key IS NOT NULL AND bundle_expires_at <= now()
ORDER BY bundle_expires_at, id
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: mark_bundles_expired
UPDATE dsar_requests SET bundle_key = NULL, bundle_removed_at = now(),
    bundle_removed_reason = 'expired'
WHERE id = ANY($1::uuid[]) AND bundle_key IS NOT NULL;

-- name: erasures_of_subject
-- Erase and withdraw requests of a number (by their receipt digest), and the calls they erased.
SELECT c.id AS call_id, c.erased_at, c.erased_by,
       coalesce(array_agg(r.id ORDER BY r.id) FILTER (WHERE r.id IS NOT NULL), '{}') AS recording_ids
FROM dsar_requests d
JOIN calls c ON c.erased_by = d.id
LEFT JOIN recordings r ON r.call_id = c.id AND r.state = 'erased'
WHERE d.subject_digest = ANY($1::bytea[])
GROUP BY c.id, c.erased_at, c.erased_by
ORDER BY c.erased_at, c.id;

-- name: erasure_of_call
SELECT c.id AS call_id, c.erased_at, c.erased_by,
       coalesce(array_agg(r.id ORDER BY r.id) FILTER (WHERE r.id IS NOT NULL), '{}') AS recording_ids
FROM calls c
LEFT JOIN recordings r ON r.call_id = c.id AND r.state = 'erased'
WHERE c.id = $1 AND c.erased_at IS NOT NULL
GROUP BY c.id, c.erased_at, c.erased_by;

-- name: requeue_dead_intake_of_erased_calls
-- A recording job that gave up (dead-lettered, the platform's copy kept for a person) on a call
-- now erased runs once more: it will discard the recording at the platform. Once per job.
WITH again AS (
    UPDATE jobs j
    SET state = 'queued', attempts = 0, run_after = now(), finished_at = NULL, updated_at = now(),
        payload = j.payload || jsonb_build_object('requeued_by_erasure', $2::text)
    FROM calls c
    WHERE j.kind = 'recording' AND j.state = 'dead' AND NOT (j.payload ? 'requeued_by_erasure')
      AND c.platform = j.payload->>'platform' AND c.external_id = j.payload->>'call_sid'
      AND c.id = ANY($1::uuid[]) AND c.erased_at IS NOT NULL
    RETURNING j.id
)
SELECT count(*) AS n, pg_notify('callvault_jobs', 'recording') FROM again;
