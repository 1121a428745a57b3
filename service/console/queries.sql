-- name: window
-- The last $2 days in the tenant's zone $1, today included, by the database's clock: local
-- midnights as instants, so a day is the tenant's day, not UTC's.
SELECT now() AS db_now,
       (now() AT TIME ZONE $1)::date AS today,
       (date_trunc('day', now() AT TIME ZONE $1) - make_interval(days => $2 - 1)) AT TIME ZONE $1
           AS since,
       (date_trunc('day', now() AT TIME ZONE $1) + interval '1 day') AT TIME ZONE $1 AS until;

-- name: consent_per_day
-- The acting tenant named outright (beside its row policy) so the planner can range-scan
-- calls_tenant_started_outcome_idx and answer from the index alone.
SELECT (c.started_at AT TIME ZONE $3)::date AS day, c.outcome, count(*) AS n
FROM calls c
WHERE c.tenant_id = current_setting('callvault.tenant', true)
  AND c.started_at >= $1 AND c.started_at < $2
GROUP BY 1, 2;

-- name: consent_per_queue
SELECT c.queue, c.outcome, count(*) AS n
FROM calls c
WHERE c.tenant_id = current_setting('callvault.tenant', true)
  AND c.started_at >= $1 AND c.started_at < $2
GROUP BY 1, 2;

-- name: stored_per_day
SELECT (r.stored_at AT TIME ZONE $3)::date AS day, count(*) AS n
FROM recordings r
WHERE r.tenant_id = current_setting('callvault.tenant', true)
  AND r.stored_at IS NOT NULL AND r.stored_at >= $1 AND r.stored_at < $2
GROUP BY 1;

-- name: purged_per_day
SELECT (r.purged_at AT TIME ZONE $3)::date AS day, count(*) AS n
FROM recordings r
WHERE r.tenant_id = current_setting('callvault.tenant', true)
  AND r.purged_at IS NOT NULL AND r.purged_at >= $1 AND r.purged_at < $2
GROUP BY 1;

-- name: due_per_day
-- Stored recordings whose retention ends in the window (those already past it fall on its
-- first day: the next purge run takes them), split by whether a hold or an open request keeps
-- them (the purge passes those by: recording_keepers(), the purge's own definition). Kept or
-- not is asked as the purge's claim asks it (retention/queries.sql, claim_expired): IN over
-- the keepers, computed once and hashed whatever the planner estimates for recordings (one
-- hashed SubPlan for each count). A join with them followed recordings' statistics: on a
-- table not yet analysed it read the keepers again for every recording.
SELECT (greatest(r.retain_until, $1) AT TIME ZONE $3)::date AS day,
       count(*) FILTER (WHERE NOT r.kept) AS due,
       count(*) FILTER (WHERE r.kept) AS kept
FROM (SELECT r.retain_until, r.id IN (SELECT k.recording_id FROM recording_keepers() k) AS kept
      FROM recordings r
      WHERE r.tenant_id = current_setting('callvault.tenant', true)
        AND r.state = 'stored' AND r.retain_until < $2) r
GROUP BY 1;

-- name: requests_by_status
-- $1: the statuses whose clock has stopped (closed, or a restriction in force).
SELECT d.status, count(*) AS n,
       count(*) FILTER (WHERE d.status <> ALL($1::text[]) AND (
           d.due_at < now()
           OR (d.acknowledged_at IS NULL AND d.acknowledge_by < now()))) AS overdue
FROM dsar_requests d
WHERE d.tenant_id = current_setting('callvault.tenant', true)
GROUP BY 1;

-- name: latest_seal
SELECT s.id, s.at, s.calls, s.format, s.max_event_id,
       encode(coalesce(s.root, s.heads_sha256), 'hex') AS root, encode(s.hash, 'hex') AS hash
FROM ledger_seals s
WHERE s.tenant_id = current_setting('callvault.tenant', true)
ORDER BY s.id DESC
LIMIT 1;
