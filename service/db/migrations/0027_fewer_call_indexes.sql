-- Less index maintenance per call written (issue 18 goal 1): the voice webhook's insert into
-- calls updated eight indexes; now six (the key, the unique platform id, caller_hash, the
-- outcome index and the two time-ordered ones). Each index dropped here was checked with EXPLAIN (ANALYZE,
-- BUFFERS), as the service role under row-level security, of every named query that touches
-- calls, on a million calls over a hundred tenants: none lost its index plan, and none relies
-- on PostgreSQL 18's skip scan (the deployment runs 16). The two time-ordered indexes, (tenant_id,
-- started_at, id) for GET /api/calls' pages and (tenant_id, started_at) INCLUDE (outcome, queue)
-- for the console's counts, stay apart. One index carrying outcome and queue served both (one
-- index insert less per call); the list's date-range p99 on a million calls read 52-83 ms with
-- it against 53-63 ms before (bench_scale on a slow day), and 79 ms with them apart again in
-- the same minutes: not shown either way, so the schema the scale goal was met with is kept.

-- A call id within a tenant: the unique (platform, external_id, tenant_id) key answers it once
-- the list's external-id filter names the platforms too (service/qa/queries.sql search_calls).
-- The key keeps its order: every webhook and job finds its call by (platform, external_id)
-- under row-level security alone, which a key led by tenant_id could not serve.
DROP INDEX calls_tenant_external_id_idx;

-- Calls by start time across tenants: the two queries that read it now name their tenant
-- (the reconciler's enroll, run per tenant) or walk the tenants (the metrics' paused calls)
-- and use the tenant-led indexes.
DROP INDEX calls_started_at_idx;
