-- name: insert_call
-- One round trip: is the person on the do-not-record list ($8: the number's hash under each key
-- in use), and the call row with its outcome so far. $3/$4 are the person's number (the caller
-- inbound, the callee outbound), $5 the contact centre's, $9 the direction, $10 the platform
-- account the call came through. A duplicate start (the platform retried) inserts nothing and
-- returns no row.
WITH listed AS (
    SELECT EXISTS (SELECT 1 FROM do_not_record WHERE phone_hash = ANY($8::bytea[])) AS on_list
)
INSERT INTO calls (platform, external_id, caller_enc, caller_hash, called, policy, outcome,
                   outcome_at, direction, platform_account)
SELECT $1, $2, $3, $4, $5, $6,
       CASE WHEN $7 OR listed.on_list THEN 'not_asked' ELSE 'in_progress' END,
       CASE WHEN $7 OR listed.on_list THEN now() END,
       $9, $10
FROM listed
ON CONFLICT (platform, external_id, tenant_id) DO NOTHING
RETURNING id, outcome, policy, ended_at, clock_timestamp() AS at,
          (SELECT on_list FROM listed) AS listed;

-- name: start_call
-- The call and its first ledger events in one statement (migration 0021), as tenant $1 when not
-- NULL; no row for a retried start.
SELECT id, outcome, policy, ended_at, at, listed
FROM callvault_start_call($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16);

-- name: lock_call
SELECT id, outcome, policy, ended_at, erased_at FROM calls
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
ON CONFLICT (tenant_id, phone_hash) DO NOTHING;

-- name: legacy_outbound_calls
-- Calls stored as inbound whose "person" is the contact centre's own number ($1: its hash under
-- each key in use): outbound calls from before directions were stored. Locked for the repair.
SELECT id, called FROM calls
WHERE direction = 'inbound' AND caller_hash = ANY($1::bytea[])
ORDER BY id
LIMIT $2
FOR UPDATE SKIP LOCKED;

-- name: mark_outbound
UPDATE calls SET direction = 'outbound', caller_enc = $2, caller_hash = $3, called = $4
WHERE id = $1 AND direction = 'inbound';
