-- Indexes for a million calls over a hundred tenants (issue 18 goal 4), found with EXPLAIN
-- (ANALYZE, BUFFERS) as the service role. Row-level security's predicate (tenant_id = setting
-- OR setting = '*') is not one an index can use, so the queries that must stay fast at scale
-- name their tenant again (tenant_id = current_setting('callvault.tenant', true)), and these
-- indexes lead with it, then give each query its order so a LIMIT stops early.

-- The purge's claim: a tenant's stored recordings by (retain_until, id), the claim's order, so a
-- batch reads its thousand rows instead of sorting every expired one (this replaces the
-- (tenant_id, retain_until) INCLUDE (id) index, whose ties still had to be sorted).
CREATE INDEX recordings_purge_claim_idx ON recordings (tenant_id, retain_until, id)
    WHERE state = 'stored';
DROP INDEX recordings_tenant_retain_until_idx;

-- GET /api/calls (service/qa/queries.sql search_calls), newest first, keyset-paginated on
-- (started_at, id): a tenant's calls in that order, alone or with one outcome, so a page of
-- 50 reads about 50 entries whatever the tenant's size; and a platform's call id within a
-- tenant (the unique key leads with the platform, which the filter does not name). The
-- (tenant_id, started_at) index is a prefix of the first and goes.
CREATE INDEX calls_tenant_started_id_idx ON calls (tenant_id, started_at, id);
CREATE INDEX calls_tenant_outcome_started_idx ON calls (tenant_id, outcome, started_at, id);
CREATE INDEX calls_tenant_external_id_idx ON calls (tenant_id, external_id);
DROP INDEX calls_tenant_started_at_idx;
