-- "Why is this recording still here?" (issue 15 item 5): which policy level set a recording's
-- retention, and one definition of what keeps a recording and when the purge takes it, shared
-- by GET /api/recordings/{id}/retention, `callvault purge --dry-run` and the purge itself.

-- Decided with retain_until when the recording is stored: the level of the call's policy
-- (tenant, queue or number) whose `retention` applied. NULL until the recording is stored.
ALTER TABLE recordings ADD COLUMN retention_source text
    CONSTRAINT recordings_retention_source_check
    CHECK (retention_source IN ('tenant', 'queue', 'number'));
-- Recordings stored before anyone wrote it down: the tenant's policy is all we can claim.
UPDATE recordings SET retention_source = 'tenant' WHERE retain_until IS NOT NULL;

-- What keeps a recording, one row per (recording, keeper), in the recording's own tenant:
--   * an active hold on its call, or on its data subject's number (numbers are hashed with one
--     key, so another tenant's hold may match the same number: it does not count);
--   * an open data-subject request of its subject that asks to see it (access), to have a
--     statement attached (correct) or to have it kept unused (restrict, also while in force):
--     purging it would defeat the request. Erase and withdraw requests keep nothing.
-- No parameters and no OR on purpose: `NOT EXISTS (... recording_keepers() k WHERE
-- k.recording_id = r.id)` becomes an anti-join whose cost follows the holds and requests, not
-- the recordings; `WHERE recording_id = $1` reaches each branch's index.
CREATE FUNCTION recording_keepers()
RETURNS TABLE (
    recording_id uuid,
    keeper text,        -- 'hold' | 'request'
    id uuid,            -- the hold's or the request's
    target text,        -- holds: 'call' | 'phone'
    reason text,        -- holds
    placed_at timestamptz,
    kind text,          -- requests
    status text,        -- requests
    since timestamptz   -- placed_at or received_at: the order they are listed in
)
LANGUAGE sql STABLE
AS $$
    SELECT r.id, 'hold', h.id, 'call', h.reason, h.placed_at, NULL, NULL, h.placed_at
    FROM holds h JOIN recordings r ON r.call_id = h.call_id AND r.tenant_id = h.tenant_id
    WHERE h.released_at IS NULL
    UNION ALL
    SELECT r.id, 'hold', h.id, 'phone', h.reason, h.placed_at, NULL, NULL, h.placed_at
    FROM holds h
    JOIN calls c ON c.caller_hash = h.phone_hash AND c.tenant_id = h.tenant_id
    JOIN recordings r ON r.call_id = c.id
    WHERE h.released_at IS NULL
    UNION ALL
    SELECT r.id, 'request', d.id, NULL, NULL, NULL, d.kind, d.status, d.received_at
    FROM dsar_requests d
    JOIN calls c ON c.caller_hash = d.phone_hash AND c.tenant_id = d.tenant_id
    JOIN recordings r ON r.call_id = c.id
    WHERE d.kind IN ('access', 'correct', 'restrict')
      AND d.status NOT IN ('completed', 'rejected', 'failed')
    UNION ALL
    -- a request that names calls (a restriction or correction of those calls) keeps their
    -- recordings too; one matched by the number already is not listed twice
    SELECT r.id, 'request', d.id, NULL, NULL, NULL, d.kind, d.status, d.received_at
    FROM dsar_requests d
    JOIN recordings r ON r.call_id = ANY(d.call_ids) AND r.tenant_id = d.tenant_id
    JOIN calls c ON c.id = r.call_id
    WHERE d.kind IN ('access', 'correct', 'restrict')
      AND d.status NOT IN ('completed', 'rejected', 'failed')
      AND c.caller_hash IS DISTINCT FROM d.phone_hash
$$;

-- A recording's requests are found by its subject's number.
CREATE INDEX dsar_requests_phone_hash_idx ON dsar_requests (phone_hash)
    WHERE phone_hash IS NOT NULL;

-- One row per recording (as row-level security lets the caller see them: SECURITY INVOKER).
-- purge_at: NULL unless the recording is stored and nothing keeps it; otherwise the moment a
-- purge pass may take it by the database's clock (retain_until, or now once that has passed).
-- The purge claims exactly the rows whose purge_at <= now(): stored, retain_until passed, no
-- row in recording_keepers() (retention/queries.sql, claim_expired).
CREATE FUNCTION recording_retention()
RETURNS TABLE (
    id uuid,
    tenant_id text,
    call_id uuid,
    state text,
    retain_until timestamptz,
    retention_source text,
    purged_at timestamptz,
    holds jsonb,
    requests jsonb,
    purge_at timestamptz
)
LANGUAGE sql STABLE
AS $$
    SELECT r.id, r.tenant_id, r.call_id, r.state, r.retain_until, r.retention_source,
           r.purged_at,
           -- a hold or request keeps what exists: a purged or erased recording lists none
           CASE WHEN r.state IN ('stored', 'pending') THEN coalesce(
               (SELECT jsonb_agg(jsonb_build_object(
                           'id', k.id, 'reason', k.reason, 'placed_at', k.placed_at,
                           'on', k.target)
                       ORDER BY k.since, k.id)
                FROM recording_keepers() k WHERE k.recording_id = r.id AND k.keeper = 'hold'),
               '[]'::jsonb) ELSE '[]'::jsonb END,
           CASE WHEN r.state IN ('stored', 'pending') THEN coalesce(
               (SELECT jsonb_agg(jsonb_build_object(
                           'id', k.id, 'kind', k.kind, 'status', k.status)
                       ORDER BY k.since, k.id)
                FROM recording_keepers() k
                WHERE k.recording_id = r.id AND k.keeper = 'request'),
               '[]'::jsonb) ELSE '[]'::jsonb END,
           CASE WHEN r.state = 'stored'
                 AND NOT EXISTS (SELECT 1 FROM recording_keepers() k WHERE k.recording_id = r.id)
                THEN greatest(r.retain_until, now()) END
    FROM recordings r
$$;
