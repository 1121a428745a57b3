-- name: search_calls
-- Newest first, keyset-paginated on (started_at, id) so pages stay stable while calls arrive.
-- The page's ids first, from an index alone (migration 0026: a request acts for one tenant,
-- named again in a form the index can use, since row-level security's own predicate, tenant =
-- setting OR setting = '*', cannot), then those rows: with the whole query in one SELECT the
-- planner, misled by that predicate's estimate, fetched every matching row to sort them.
SELECT c.id, c.platform, c.external_id, c.started_at, c.caller_enc, c.called, c.direction,
       c.outcome, c.policy->>'queue' AS queue
FROM calls c
WHERE c.id IN (
    SELECT p.id FROM calls p
    WHERE p.tenant_id = current_setting('callvault.tenant', true)
      AND ($1::timestamptz IS NULL OR p.started_at >= $1)
      AND ($2::timestamptz IS NULL OR p.started_at < $2)
      AND ($3::text IS NULL OR p.outcome = $3)
      -- the platforms named so that the unique (platform, external_id, tenant_id) key finds
      -- the call (migration 0027), as pauses' find_call does
      AND ($4::text IS NULL
           OR (p.external_id = $4 AND p.platform IN ('twilio', 'stringee', 'pbx')))
      AND ($5::text IS NULL OR p.queue = $5)
      AND ($6::timestamptz IS NULL OR (p.started_at, p.id) < ($6, $7::uuid))
    ORDER BY p.started_at DESC, p.id DESC
    LIMIT $8)
ORDER BY c.started_at DESC, c.id DESC;

-- name: call_by_id
SELECT c.id, c.platform, c.external_id, c.started_at, c.caller_enc, c.called, c.direction,
       c.outcome, c.policy->>'queue' AS queue
FROM calls c WHERE c.id = $1;

-- name: recordings_of_calls
-- A recording whose data key is destroyed is gone whatever its row says: a purge whose store
-- refused the object leaves the row `stored` (the next pass deletes the object), but nothing
-- can read it any more. Its state is then what destroyed the key: `erased` for an erasure,
-- `purged` for retention (the reason its `key_destroyed` ledger event gives).
SELECT r.id, r.call_id, coalesce(s.state, r.state) AS state, r.duration_s, r.retain_until,
       -- a hold keeps what exists: a purged or erased recording is not "held"
       coalesce(s.state, r.state) IN ('stored', 'pending') AND EXISTS (SELECT 1 FROM holds h
               WHERE h.released_at IS NULL
                 AND (h.call_id = r.call_id
                      OR (h.phone_hash IS NOT NULL AND h.phone_hash = c.caller_hash))) AS held
FROM recordings r JOIN calls c ON c.id = r.call_id
LEFT JOIN LATERAL (
    SELECT CASE WHEN e.details->>'reason' LIKE 'erased%' THEN 'erased' ELSE 'purged' END
           AS state
    FROM ledger_events e
    WHERE r.state = 'stored'
      AND e.call_id = r.call_id AND e.dedupe_key = 'key_destroyed:' || r.id::text
      AND NOT EXISTS (SELECT 1 FROM recording_keys k WHERE k.recording_id = r.id)
    LIMIT 1
) s ON true
WHERE r.call_id = ANY($1::uuid[])
ORDER BY r.created_at, r.id;

-- name: recording_for_playback
SELECT id, call_id, state, object_key, object_store, content_type FROM recordings
WHERE id = $1;

-- name: tenant_name
-- tenants are the operator's configuration (no row-level security): named by id only
SELECT name FROM tenants WHERE id = $1;
