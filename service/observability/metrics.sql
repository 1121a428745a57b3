-- The database figures /metrics shows, per tenant (read as the platform, '*').

-- name: labelled_tenants
-- The tenants that get a label of their own: the oldest first, so a label, once given, stays
-- (a new tenant past the bound joins "_other" instead of pushing an older one out).
SELECT id FROM tenants ORDER BY created_at, id LIMIT $1;

-- name: tenant_count
SELECT count(*) FROM tenants;

-- name: jobs_by_tenant
SELECT tenant_id, state, count(*) AS jobs, extract(epoch FROM now() - min(created_at)) AS oldest_s
FROM jobs GROUP BY tenant_id, state;

-- name: at_platform_by_tenant
-- Recordings the platform still holds: intake or deletion not finished (or dead).
SELECT tenant_id, count(*) AS n FROM jobs
WHERE kind = 'recording' AND state <> 'done'
GROUP BY tenant_id;

-- name: holds_by_tenant
SELECT tenant_id, count(*) AS n FROM holds WHERE released_at IS NULL GROUP BY tenant_id;

-- name: paused_by_tenant
-- Calls of the last day whose recording is paused (their last pause or resume event is a pause):
-- now, the call going on, or left paused when it ended (never resumed). A call lasts less than
-- a day, so every pause in force is among them. Read tenant by tenant so each range is one
-- scan of calls_tenant_outcome_started_idx (tenant, 'consented', the last day), the index that
-- serves the list; there is no index on started_at alone (migration 0027).
SELECT t.id AS tenant_id, p.in_progress, p.ended
FROM tenants t
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE c.ended_at IS NULL) AS in_progress,
           count(*) FILTER (WHERE c.ended_at IS NOT NULL) AS ended
    FROM calls c
    JOIN LATERAL (
        SELECT e.type FROM ledger_events e
        WHERE e.call_id = c.id AND e.type IN ('recording_paused', 'recording_resumed')
        ORDER BY e.seq DESC LIMIT 1
    ) last ON last.type = 'recording_paused'
    WHERE c.tenant_id = t.id AND c.outcome = 'consented'
      AND c.started_at > now() - interval '1 day'
) p
WHERE p.in_progress + p.ended > 0;
