-- name: enroll
-- Calls that ended at least $1 seconds ago (the grace period), within the horizon ($2 seconds),
-- with a consent outcome and no terminal recording callback: the reconciler takes them up once.
-- `started_at` bounds the scan (no call lasts a day). The pass runs per tenant, named again in a
-- form an index can use (calls_tenant_started_id_idx; row-level security's predicate cannot):
-- without it each tenant's pass read every tenant's calls of the horizon.
INSERT INTO recording_reconciliations (call_id)
SELECT c.id
FROM calls c
WHERE c.tenant_id = current_setting('callvault.tenant', true)
  AND c.platform = $3
  AND c.started_at > now() - make_interval(secs => $2) - interval '1 day'
  AND c.ended_at IS NOT NULL
  AND c.ended_at <= now() - make_interval(secs => $1)
  AND c.ended_at > now() - make_interval(secs => $2)
  AND c.outcome <> 'in_progress'
  AND NOT EXISTS (
      SELECT 1 FROM recording_callbacks cb
      WHERE cb.tenant_id = c.tenant_id AND cb.platform = c.platform AND cb.call_sid = c.external_id
        AND cb.status IN ('completed', 'absent', 'failed'))
ON CONFLICT (call_id) DO NOTHING;

-- name: claim
-- Up to $1 open calls of platform $7 not asked about in this pass (since $2) nor in the last $6
-- seconds, not claimed by another replica (a claim lasts $5 seconds), still within the horizon
-- ($3 seconds) and the attempt bound ($4), and still without a terminal callback. Consented calls first: theirs is the recording that must be stored.
-- SKIP LOCKED plus the claim's lease keep two replicas off the same call.
WITH next AS (
    SELECT r.call_id
    FROM recording_reconciliations r
    JOIN calls c ON c.id = r.call_id
    WHERE r.settled_at IS NULL
      AND c.platform = $7
      AND r.attempts < $4
      AND (r.claimed_until IS NULL OR r.claimed_until < now())
      AND (r.last_attempt_at IS NULL
           OR r.last_attempt_at < least($2, now() - make_interval(secs => $6)))
      AND c.ended_at > now() - make_interval(secs => $3)
      AND NOT EXISTS (
          SELECT 1 FROM recording_callbacks cb
          WHERE cb.tenant_id = c.tenant_id AND cb.platform = c.platform AND cb.call_sid = c.external_id
            AND cb.status IN ('completed', 'absent', 'failed'))
    ORDER BY (c.outcome = 'consented') DESC, r.attempts, c.ended_at
    LIMIT $1
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE recording_reconciliations r
SET attempts = r.attempts + 1, claimed_until = now() + make_interval(secs => $5),
    last_attempt_at = now()
FROM next, calls c
WHERE r.call_id = next.call_id AND c.id = r.call_id
RETURNING r.call_id, r.attempts, c.external_id, c.platform, c.outcome, c.platform_account;

-- name: finish
UPDATE recording_reconciliations
SET claimed_until = NULL,
    settled_at = CASE WHEN $2 THEN now() END,
    found = found + $3,
    last_error = $4
WHERE call_id = $1;

-- name: pass_started
SELECT now();
