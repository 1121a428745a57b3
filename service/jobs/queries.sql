-- name: enqueue
-- A job with a dedupe key that already exists in its tenant (in any state) is not enqueued again.
WITH ins AS (
    INSERT INTO jobs (kind, payload, dedupe_key, max_attempts, run_after)
    VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
    ON CONFLICT (dedupe_key, tenant_id) DO NOTHING
    RETURNING id
)
SELECT id, pg_notify('callvault_jobs', $1) FROM ins;

-- name: claim
-- Due queued jobs, and running jobs whose worker stopped renewing its lease (it crashed).
WITH next AS (
    SELECT id FROM jobs
    WHERE (state = 'queued' AND run_after <= now())
       OR (state = 'running' AND lease_expires_at < now())
    ORDER BY run_after, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
SET state = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
    lease_expires_at = now() + make_interval(secs => $2), locked_by = $3, updated_at = now()
FROM next
WHERE j.id = next.id
RETURNING j.id, j.kind, j.payload, j.attempts, j.max_attempts, j.lease_token,
          extract(epoch FROM now() - j.created_at) AS age_s, j.tenant_id;

-- name: heartbeat
UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
WHERE id = $1 AND lease_token = $2 AND state = 'running' AND lease_expires_at > now()
RETURNING id;

-- name: fence
-- Inside the transaction that commits a job's effects: holds the job row until commit, and
-- finds nothing when the lease has expired or passed to another worker.
SELECT id FROM jobs
WHERE id = $1 AND lease_token = $2 AND state = 'running' AND lease_expires_at > now()
FOR UPDATE;

-- name: complete
UPDATE jobs
SET state = 'done', finished_at = now(), lease_token = NULL, lease_expires_at = NULL,
    last_error = NULL, updated_at = now()
WHERE id = $1 AND lease_token = $2
RETURNING id;

-- name: retry
UPDATE jobs
SET state = CASE WHEN attempts >= max_attempts OR $5 THEN 'dead' ELSE 'queued' END,
    finished_at = CASE WHEN attempts >= max_attempts OR $5 THEN now() END,
    run_after = now() + make_interval(secs => $3), last_error = $4,
    lease_token = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id = $1 AND lease_token = $2
RETURNING state;

-- name: defer
-- Not a failure (waiting for something else to happen first): the attempt is given back.
UPDATE jobs
SET state = 'queued', attempts = greatest(attempts - 1, 0),
    run_after = now() + make_interval(secs => $3), last_error = $4,
    lease_token = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id = $1 AND lease_token = $2
RETURNING id;

-- name: stats
SELECT state, count(*) AS jobs, extract(epoch FROM now() - min(created_at)) AS oldest_s
FROM jobs GROUP BY state;

-- name: list_by_state
SELECT id, kind, payload, attempts, max_attempts, last_error, created_at, updated_at
FROM jobs WHERE state = $1 ORDER BY id LIMIT $2;

-- name: requeue_dead
UPDATE jobs
SET state = 'queued', attempts = 0, run_after = now(), finished_at = NULL, updated_at = now()
WHERE id = $1 AND state = 'dead'
RETURNING id;

-- name: next_due_in
SELECT extract(epoch FROM min(run_after) - now()) FROM jobs WHERE state = 'queued';

-- name: prune_done
-- Finished jobs older than the retention ($1 seconds, by the database's clock), a batch ($2) at
-- a time. Dead jobs stay for an operator to look at; the recording callbacks and requests
-- remember what was done, so a pruned dedupe key cannot bring a job back.
WITH old AS (
    SELECT id FROM jobs
    WHERE state = 'done' AND finished_at < now() - make_interval(secs => $1)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobs j USING old WHERE j.id = old.id;
