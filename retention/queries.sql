-- name: claim_expired
-- Exactly the recordings whose explanation (recording_retention(), migration 0016) has
-- purge_at <= now(): stored, expired, and kept by nothing in recording_keepers() (no active hold,
-- no open access, correct or restrict request). The keepers are computed once per claim and
-- looked up in a hash table: NOT IN over an uncorrelated subquery is a "hashed SubPlan", which
-- PostgreSQL chooses from the keepers' own estimated size (within hash_mem), whatever it
-- estimates for recordings. NOT EXISTS, planned as an anti-join, followed recordings'
-- statistics: on a table loaded and not yet analysed (a restore, a bulk COPY) the planner
-- expected one expired row and ran the keepers' whole union again for every recording (a
-- nested loop, about 5 s a batch of 1000 among 20,000). NOT IN's rule for NULLs changes
-- nothing here: every keeper's recording_id is a recordings.id, never NULL. Rows are locked
-- until the purge commits; another replica's purge skips them. The pass runs as one tenant
-- (for_each_tenant), said here again in a form an index can use (recordings_purge_claim_idx,
-- migration 0026): row-level security's own predicate (tenant = setting OR setting = '*')
-- cannot, and without it each batch would sort every expired recording of every tenant.
SELECT r.id, r.call_id, r.object_key, r.object_store, r.retain_until
FROM recordings r
WHERE r.state = 'stored' AND r.retain_until <= now()
  AND r.tenant_id = current_setting('callvault.tenant', true)
  AND r.id NOT IN (SELECT k.recording_id FROM recording_keepers() k)
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
-- Active ones first, then released; newest first within each; id breaks ties. $3-$5: the
-- page's start, after the last row of the one before (released, placed_at, id).
SELECT id, call_id, call_id IS NULL AS on_phone, reason, case_ref, placed_by, placed_at,
       released_by, released_at, released_at IS NOT NULL AS released, phone_enc
FROM holds
WHERE ($1 OR released_at IS NULL)
  AND ($3::boolean IS NULL
       OR (released_at IS NOT NULL) > $3
       OR ((released_at IS NOT NULL) = $3 AND (placed_at, id) < ($4, $5)))
ORDER BY released_at IS NOT NULL, placed_at DESC, id DESC
LIMIT $2;

-- name: active_holds_count
SELECT count(*) FROM holds WHERE released_at IS NULL;

-- name: db_now
SELECT now();

-- name: tenant_policy
-- The acting tenant's stored policy (tenants carry no row-level security: named by id).
SELECT id, policy FROM tenants WHERE id = current_setting('callvault.tenant', true);

-- name: insert_request
INSERT INTO dsar_requests (kind, phone_hash, phone_enc, requested_by, received_at,
                           acknowledge_by, due_at, subject_digest, clock, status, call_ids,
                           correction, statement_enc, channel, bundle_sealed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
RETURNING id;

-- name: request_by_id
-- With the time left by the database's clock (NULL where no deadline runs).
SELECT d.*, d.statement_enc IS NOT NULL AS has_statement, now() AS db_now
FROM dsar_requests d WHERE d.id = $1;

-- name: list_requests
-- Open ones first by deadline; $2: only those with a deadline (acknowledge or complete)
-- within this many seconds, overdue ones included. $5-$8: the page's start, after the last
-- row of the one before (its sort_closed, sort_deadline, received_at, id).
SELECT * FROM (
    SELECT d.*, d.statement_enc IS NOT NULL AS has_statement, now() AS db_now,
           d.status IN ('completed', 'rejected') AS sort_closed,
           least(d.due_at, CASE WHEN d.acknowledged_at IS NULL THEN d.acknowledge_by END)
               AS sort_deadline
    FROM dsar_requests d
    WHERE ($1::text[] IS NULL OR d.status = ANY($1::text[]))
      AND ($2::float8 IS NULL OR (
            d.status NOT IN ('completed', 'rejected', 'in_force')
            AND (d.due_at <= now() + make_interval(secs => $2)
                 OR (d.acknowledged_at IS NULL AND d.acknowledge_by <= now() + make_interval(secs => $2)))))
      AND ($3::text IS NULL OR d.kind = $3)
) r
WHERE $5::boolean IS NULL
   OR (r.sort_closed, r.sort_deadline, r.received_at, r.id) > ($5, $6::timestamptz, $7::timestamptz, $8::uuid)
ORDER BY r.sort_closed, r.sort_deadline, r.received_at, r.id
LIMIT $4;

-- name: set_request_status
-- The job's progress; a request closed meanwhile (rejected) stays as it is.
UPDATE dsar_requests SET status = $2, result = $3,
    completed_at = CASE WHEN $2 = 'completed' THEN now() END,
    bundle_key = coalesce($4, bundle_key)
WHERE id = $1 AND status NOT IN ('completed', 'rejected');

-- name: lock_request_for_action
SELECT d.*, now() AS db_now FROM dsar_requests d WHERE d.id = $1 FOR UPDATE;

-- name: acknowledge_request
UPDATE dsar_requests SET acknowledged_at = now(), acknowledged_by = $2,
    status = CASE WHEN status = 'received' THEN 'acknowledged' ELSE status END
WHERE id = $1;

-- name: extend_request
UPDATE dsar_requests SET due_before_extension = due_at, due_at = $2, extension_days = $3,
    extension_reason = $4, extended_by = $5, extended_at = now()
WHERE id = $1 AND extended_at IS NULL;

-- name: reject_request
UPDATE dsar_requests SET status = 'rejected', rejected_reason = $2, rejected_by = $3,
    rejected_at = now()
WHERE id = $1;

-- name: lift_restriction
UPDATE dsar_requests SET status = 'completed', completed_at = now(), lifted_by = $2,
    lifted_at = now()
WHERE id = $1 AND kind = 'restrict' AND status = 'in_force';

-- name: unlink_call
-- The number is taken off a call the subject says is not theirs; the call and its recordings
-- stay (their retention runs as before), attributed to no one.
UPDATE calls SET caller_enc = NULL, caller_hash = NULL WHERE id = $1 AND caller_hash = ANY($2::bytea[]);

-- name: call_restricted
-- A restriction in force on the call's number (or naming the call: it was the number's when
-- the restriction was received, whatever a key rotation has done to the hash since).
SELECT EXISTS (
    SELECT 1 FROM dsar_requests d JOIN calls c ON c.id = $1
    WHERE d.kind = 'restrict' AND d.status = 'in_force'
      AND (d.phone_hash = c.caller_hash OR c.id = ANY(d.call_ids)));

-- name: lock_subject
-- Until the transaction ends: one request of this kind for this number at a time.
SELECT pg_advisory_xact_lock(hashtextextended('callvault.subject:' || encode($1::bytea, 'hex'), 0));

-- name: restriction_in_force
SELECT id FROM dsar_requests
WHERE phone_hash = ANY($1::bytea[]) AND kind = 'restrict' AND status = 'in_force'
LIMIT 1;

-- name: call_of_recording
SELECT call_id FROM recordings WHERE id = $1;

-- name: request_subject_restricted
-- A restriction in force on the number of this (access) request.
SELECT EXISTS (
    SELECT 1 FROM dsar_requests d JOIN dsar_requests r ON r.id = $1
    WHERE d.kind = 'restrict' AND d.status = 'in_force' AND d.phone_hash = r.phone_hash);

-- name: request_counts_by_tenant
-- Per tenant: open requests, and those past (overdue) or within $1 seconds of (due soon)
-- their acknowledgement or completion deadline, by the database's clock. A restriction in
-- force has been carried out: no deadline runs for it.
SELECT tenant_id,
       count(*) FILTER (WHERE status NOT IN ('completed', 'rejected')) AS open,
       count(*) FILTER (WHERE status NOT IN ('completed', 'rejected', 'in_force')
                          AND due_at < now()) AS complete_overdue,
       count(*) FILTER (WHERE status NOT IN ('completed', 'rejected', 'in_force')
                          AND due_at >= now() AND due_at < now() + make_interval(secs => $1))
           AS complete_due_soon,
       count(*) FILTER (WHERE status NOT IN ('completed', 'rejected', 'in_force')
                          AND acknowledged_at IS NULL AND acknowledge_by < now())
           AS acknowledge_overdue,
       count(*) FILTER (WHERE status NOT IN ('completed', 'rejected', 'in_force')
                          AND acknowledged_at IS NULL AND acknowledge_by >= now()
                          AND acknowledge_by < now() + make_interval(secs => $1))
           AS acknowledge_due_soon
FROM dsar_requests
GROUP BY tenant_id
ORDER BY tenant_id;

-- name: forget_request_phone
-- The request keeps only its receipt digest ($2) of the number, for holds placed later.
UPDATE dsar_requests SET phone_hash = NULL, phone_enc = NULL, subject_digest = $2 WHERE id = $1;


-- name: erasable_recordings_of_call
-- The call's recordings that no active hold covers, locked for the erasure.
SELECT r.id, r.object_key, r.object_store, r.upload_store, r.state FROM recordings r
JOIN calls c ON c.id = r.call_id
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
SELECT id, state, object_key, object_store, sha256, size_bytes, content_type, duration_s,
       stored_at, retain_until
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
JOIN calls c ON c.tenant_id = j.tenant_id
    AND c.platform = j.payload->>'platform' AND c.external_id = j.payload->>'call_sid'
WHERE j.kind = 'recording' AND j.state IN ('queued', 'running') AND c.id = ANY($1::uuid[]);

-- name: lock_other_requests_of_phone
-- Every other request of the number, of any kind and status, locked while its number is
-- cleared and its bundle deleted (an access job committing meanwhile waits, then sees it).
SELECT id, kind, status, bundle_key, bundle_store, bundle_uploads FROM dsar_requests
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

-- name: supersede_restrictions_of_phone
UPDATE dsar_requests SET status = 'completed', completed_at = now(),
    result = result || jsonb_build_object('superseded_by_erasure', $2::text),
    phone_hash = NULL, phone_enc = NULL
WHERE phone_hash = ANY($1::bytea[]) AND kind = 'restrict' AND status = 'in_force';

-- name: erase_request_phone_and_bundle
UPDATE dsar_requests SET phone_hash = NULL, phone_enc = NULL, bundle_key = NULL,
    statement_enc = NULL,
    bundle_removed_at = CASE WHEN bundle_key IS NOT NULL THEN now() ELSE bundle_removed_at END,
    bundle_removed_reason = CASE WHEN bundle_key IS NOT NULL THEN 'erased'
                                 ELSE bundle_removed_reason END
WHERE id = $1;

-- name: forget_released_holds_of_phone
-- Active holds keep the number (they are a legal obligation); finished ones forget it.
UPDATE holds SET phone_hash = NULL, phone_enc = NULL
WHERE phone_hash = ANY($1::bytea[]) AND released_at IS NOT NULL;

-- name: lock_request
SELECT id, status, phone_enc, bundle_key, bundle_uploads FROM dsar_requests
WHERE id = $1 FOR UPDATE;

-- name: announce_bundle_upload
-- A run's own bundle key and the store it is about to go to, committed before its upload starts
-- (migrations 0028, 0029); not announced
-- when the request was closed or its number erased meanwhile: that run builds nothing. With the
-- request's status either way.
WITH announced AS (
    UPDATE dsar_requests
    SET bundle_uploads = bundle_uploads || jsonb_build_object($2::text, $3::text)
    WHERE id = $1 AND status NOT IN ('completed', 'rejected') AND phone_enc IS NOT NULL
    RETURNING id
)
SELECT d.status, EXISTS (SELECT 1 FROM announced) AS announced
FROM dsar_requests d WHERE d.id = $1;

-- name: forget_bundle_upload
-- A run that lost (the request completed on another run's bundle, or was closed) deleted its
-- own upload.
UPDATE dsar_requests SET bundle_uploads = bundle_uploads - $2::text WHERE id = $1;

-- name: complete_access_request
-- Only a request still open, with its number, completes, on this run's bundle. The other runs'
-- uploads (deleted in the same transaction) stay listed until their runs commit: one still
-- running may upload after this, and then erasure and offboarding must still find it.
UPDATE dsar_requests SET status = 'completed', completed_at = now(), result = $2,
    bundle_key = $3, bundle_expires_at = now() + make_interval(secs => $4), bundle_store = $5,
    bundle_uploads = bundle_uploads - $3::text
WHERE id = $1 AND status NOT IN ('completed', 'rejected') AND phone_enc IS NOT NULL
RETURNING bundle_expires_at;

-- name: bundle_of_request
-- The bundle's state by the database's clock.
SELECT bundle_key, bundle_store, bundle_removed_reason,
       bundle_key IS NOT NULL AND bundle_expires_at <= now() AS bundle_expired
FROM dsar_requests WHERE id = $1;

-- name: claim_expired_bundles
-- The acting tenant's only (the pass runs as one tenant, for_each_tenant), said here as
-- claim_expired says it: a connection row-level security does not bind (a superuser) would
-- otherwise take every tenant's bundles in the first tenant's pass, and delete them with that
-- tenant's store and audit them in its trail. With the uploads of runs that never reached their
-- commit (a run that crashed after its upload, the request completed by another): they go too.
SELECT id, bundle_key, bundle_store, bundle_expires_at, bundle_uploads FROM dsar_requests
WHERE bundle_key IS NOT NULL AND bundle_expires_at <= now()
  AND tenant_id = current_setting('callvault.tenant', true)
ORDER BY bundle_expires_at, id
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: claim_stale_uploads
-- Requests closed a day ago or more (by the database's clock) that still list uploads of runs
-- that never reached their commit (bundle_uploads: a run that crashed after its upload, or whose
-- own delete was refused, after an erasure or another run closed the request). A day is far
-- longer than a run can last, so none of them can still be uploading: their objects go and the
-- list is cleared. The acting tenant's only, as claim_expired_bundles.
SELECT id, bundle_uploads FROM dsar_requests
WHERE bundle_uploads <> '{}'::jsonb AND status IN ('completed', 'rejected')
  AND coalesce(completed_at, rejected_at) <= now() - interval '1 day'
  AND tenant_id = current_setting('callvault.tenant', true)
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: forget_uploads
UPDATE dsar_requests SET bundle_uploads = '{}'::jsonb WHERE id = ANY($1::uuid[]);

-- name: claim_left_recording_uploads
-- Recordings past their intake (committed, erased, purged) whose last attempt's upload named
-- another store than the one they were committed to (service/intake/job.py, _announce_upload:
-- an attempt that could not delete in a store its tenant had left went on in the new one, the
-- old one still named). No attempt uploads for them any more: what an earlier one may have
-- left in upload_store goes (never the committed object: another store). The acting tenant's
-- only; migration 0031's partial index finds them.
SELECT id, upload_store FROM recordings
WHERE upload_store IS NOT NULL AND upload_store IS DISTINCT FROM object_store
  AND state <> 'pending'
  AND tenant_id = current_setting('callvault.tenant', true)
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: forget_left_recording_uploads
UPDATE recordings SET upload_store = NULL WHERE id = ANY($1::uuid[]);

-- name: mark_bundles_expired
UPDATE dsar_requests SET bundle_key = NULL, bundle_uploads = '{}'::jsonb,
    bundle_removed_at = now(),
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
      AND c.tenant_id = j.tenant_id
      AND c.platform = j.payload->>'platform' AND c.external_id = j.payload->>'call_sid'
      AND c.id = ANY($1::uuid[]) AND c.erased_at IS NOT NULL
    RETURNING j.id
)
SELECT count(*) AS n, pg_notify('callvault_jobs', 'recording') FROM again;

-- name: stored_recordings_of_calls
-- What a sealed access bundle would hand out (checked when the request is received).
SELECT id FROM recordings
WHERE call_id = ANY($1::uuid[]) AND state = 'stored' AND object_key IS NOT NULL;
