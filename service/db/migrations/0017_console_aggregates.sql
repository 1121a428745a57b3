-- The compliance console's daily aggregates (issue 16): consent outcomes per day and per queue,
-- recordings stored and purged per day, recordings due to be purged. Each is answered from an
-- index alone (an index-only scan over the tenant's range), so a month of a million calls is
-- counted without reading the calls themselves.

-- The queue a call was routed to, as its policy recorded it; a stored column so an index can
-- carry it (PostgreSQL answers an expression index only by reading the row).
ALTER TABLE calls ADD COLUMN queue text GENERATED ALWAYS AS (policy->>'queue') STORED;
CREATE INDEX calls_tenant_started_outcome_idx
    ON calls (tenant_id, started_at) INCLUDE (outcome, queue);

CREATE INDEX recordings_tenant_stored_at_idx
    ON recordings (tenant_id, stored_at) WHERE stored_at IS NOT NULL;
CREATE INDEX recordings_tenant_purged_at_idx
    ON recordings (tenant_id, purged_at) WHERE purged_at IS NOT NULL;
-- id: what the join with recording_keepers() needs, so this one is index-only too
CREATE INDEX recordings_tenant_retain_until_idx
    ON recordings (tenant_id, retain_until) INCLUDE (id) WHERE state = 'stored';
