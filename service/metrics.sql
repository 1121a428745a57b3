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
