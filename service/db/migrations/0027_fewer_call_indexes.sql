-- Less index maintenance per call written (issue 18 goal 1): the voice webhook's insert into
-- calls updated eight indexes; now five (the key, the unique platform id, caller_hash, the
-- outcome index and the one below). Each index dropped here was checked with EXPLAIN (ANALYZE,
-- BUFFERS), as the service role under row-level security, of every named query that touches
-- calls, on a million calls over a hundred tenants: none lost its index plan, and none relies
-- on PostgreSQL 18's skip scan (the deployment runs 16).

-- One index for a tenant's calls in time order, carrying what the console counts. The plain
-- (tenant_id, started_at, id) served GET /api/calls' pages and the (tenant_id, started_at)
-- INCLUDE (outcome, queue) one the console's per-day and per-queue counts; this one answers
-- both from the index alone, and the list's queue filter too (it read every row of the tenant
-- before). Built before the old ones go: CREATE INDEX holds a SHARE lock (reads go on while it
-- builds), whereas a DROP first would hold ACCESS EXCLUSIVE on calls for the whole build, every
-- webhook and console query waiting behind it; the drops and the rename are then brief.
CREATE INDEX calls_tenant_started_id_carrying_idx ON calls (tenant_id, started_at, id)
    INCLUDE (outcome, queue);
DROP INDEX calls_tenant_started_id_idx;
DROP INDEX calls_tenant_started_outcome_idx;
ALTER INDEX calls_tenant_started_id_carrying_idx RENAME TO calls_tenant_started_id_idx;

-- A call id within a tenant: the unique (platform, external_id, tenant_id) key answers it once
-- the list's external-id filter names the platforms too (service/qa/queries.sql search_calls).
-- The key keeps its order: every webhook and job finds its call by (platform, external_id)
-- under row-level security alone, which a key led by tenant_id could not serve.
DROP INDEX calls_tenant_external_id_idx;

-- Calls by start time across tenants: the two queries that read it now name their tenant
-- (the reconciler's enroll, run per tenant) or walk the tenants (the metrics' paused calls)
-- and use the tenant-led indexes.
DROP INDEX calls_started_at_idx;
