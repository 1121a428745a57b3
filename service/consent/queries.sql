-- name: on_do_not_record
-- $1: the number's hash under each key in use (two during a key rotation)
SELECT EXISTS (SELECT 1 FROM do_not_record WHERE phone_hash = ANY($1::bytea[]));

-- name: insert_call
-- A duplicate start (the platform retried) inserts nothing and returns no row.
INSERT INTO calls (platform, external_id, caller_enc, caller_hash, called, policy, outcome, outcome_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $7 = 'in_progress' THEN NULL ELSE now() END)
ON CONFLICT (platform, external_id) DO NOTHING
RETURNING id, outcome, policy, ended_at;

-- name: lock_call
SELECT id, outcome, policy, ended_at FROM calls
WHERE platform = $1 AND external_id = $2
FOR UPDATE;

-- name: set_outcome
UPDATE calls SET outcome = $2, outcome_at = now() WHERE id = $1 AND outcome = 'in_progress';

-- name: set_platform_status
UPDATE calls SET platform_status = $2 WHERE id = $1;

-- name: set_ended
UPDATE calls SET platform_status = $2, ended_at = coalesce(ended_at, now()) WHERE id = $1;

-- name: add_do_not_record
INSERT INTO do_not_record (phone_hash, phone_enc, reason) VALUES ($1, $2, $3)
ON CONFLICT (phone_hash) DO NOTHING;
