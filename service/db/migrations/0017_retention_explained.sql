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

-- The active holds that keep a recording: on its call, or on its data subject's number, in the
-- recording's own tenant (numbers are hashed with one key, so two tenants' holds may match the
-- same number; only the recording's tenant's holds count).
CREATE FUNCTION recording_holds(p_tenant text, p_call uuid, p_subject bytea)
RETURNS TABLE (id uuid, call_id uuid, reason text, placed_at timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT h.id, h.call_id, h.reason, h.placed_at FROM holds h
    WHERE h.released_at IS NULL AND h.tenant_id = p_tenant
      AND (h.call_id = p_call OR (h.phone_hash IS NOT NULL AND h.phone_hash = p_subject))
$$;

-- The open data-subject requests that keep a recording: the subject asked to see it (access),
-- to have a statement attached (correct) or to have it kept unused (restrict, also while in
-- force); purging it would defeat the request. Erase and withdraw requests keep nothing: they
-- delete. Matched by the subject's number; p_call is the recording's call, for requests that
-- name calls.
CREATE FUNCTION recording_requests(p_tenant text, p_call uuid, p_subject bytea)
RETURNS TABLE (id uuid, kind text, status text, received_at timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT d.id, d.kind, d.status, d.received_at FROM dsar_requests d
    WHERE d.tenant_id = p_tenant AND d.phone_hash = p_subject
      AND d.kind IN ('access', 'correct', 'restrict')
      AND d.status NOT IN ('completed', 'rejected', 'failed')
$$;

-- One row per recording (as row-level security lets the caller see them: SECURITY INVOKER).
-- purge_at: NULL unless the recording is stored and nothing keeps it; otherwise the moment a
-- purge pass may take it by the database's clock (retain_until, or now once that has passed).
-- The purge takes exactly the rows whose purge_at <= now().
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
           CASE WHEN r.state IN ('stored', 'pending') THEN coalesce(
               (SELECT jsonb_agg(jsonb_build_object(
                           'id', h.id, 'reason', h.reason, 'placed_at', h.placed_at,
                           'on', CASE WHEN h.call_id IS NULL THEN 'phone' ELSE 'call' END)
                       ORDER BY h.placed_at, h.id)
                FROM recording_holds(r.tenant_id, r.call_id, c.caller_hash) h),
               '[]'::jsonb) ELSE '[]'::jsonb END,
           CASE WHEN r.state IN ('stored', 'pending') THEN coalesce(
               (SELECT jsonb_agg(jsonb_build_object(
                           'id', d.id, 'kind', d.kind, 'status', d.status)
                       ORDER BY d.received_at, d.id)
                FROM recording_requests(r.tenant_id, r.call_id, c.caller_hash) d),
               '[]'::jsonb) ELSE '[]'::jsonb END,
           CASE WHEN r.state = 'stored'
                 AND NOT EXISTS (SELECT 1 FROM recording_holds(r.tenant_id, r.call_id, c.caller_hash))
                 AND NOT EXISTS (SELECT 1 FROM recording_requests(r.tenant_id, r.call_id, c.caller_hash))
                THEN greatest(r.retain_until, now()) END
    FROM recordings r JOIN calls c ON c.id = r.call_id
$$;
