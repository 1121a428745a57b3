-- name: lock_call
-- Serialises appends to one call (never across calls). The head must be read by a separate,
-- later statement: in READ COMMITTED a statement that waited for the lock still sees the
-- snapshot it started with, so reading the head in this one would build on a stale head.
SELECT id FROM calls WHERE id = $1 FOR UPDATE;

-- name: chain_head
-- The head, the clock, and which of the given dedupe keys the chain already has.
SELECT clock_timestamp() AS at, h.seq, h.hash,
       ARRAY(SELECT dedupe_key FROM ledger_events
             WHERE call_id = $1 AND dedupe_key = ANY($2::text[])) AS seen
FROM (SELECT 1) one
LEFT JOIN LATERAL (
    SELECT seq, hash FROM ledger_events WHERE call_id = $1 ORDER BY seq DESC LIMIT 1
) h ON true;

-- name: insert_events
-- One round trip for a whole batch, in order (the link trigger checks each row against the one
-- before it).
INSERT INTO ledger_events (call_id, seq, type, at, details, dedupe_key, prev_hash, hash)
SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::jsonb[],
                     $6::text[], $7::bytea[], $8::bytea[])
ORDER BY 1, 2;

-- name: call_events
SELECT call_id, seq, type, at, details, dedupe_key, prev_hash, hash
FROM ledger_events WHERE call_id = $1 ORDER BY seq;

-- name: all_events
SELECT call_id, seq, type, at, details, dedupe_key, prev_hash, hash
FROM ledger_events ORDER BY call_id, seq;

-- name: calls_without_events
SELECT c.id FROM calls c
WHERE NOT EXISTS (SELECT 1 FROM ledger_events e WHERE e.call_id = c.id)
ORDER BY c.id;

-- name: call_exists
SELECT EXISTS (SELECT 1 FROM calls WHERE id = $1);

-- name: lock_calls
SELECT id FROM calls WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE;

-- name: chain_heads
SELECT DISTINCT ON (call_id) call_id, seq, hash FROM ledger_events
WHERE call_id = ANY($1::uuid[])
ORDER BY call_id, seq DESC;

-- name: clock
SELECT clock_timestamp();

-- name: heads_upto
-- Every call's chain head among the events up to a given id, in call order.
SELECT DISTINCT ON (call_id) call_id, seq, hash FROM ledger_events
WHERE id <= $1
ORDER BY call_id, seq DESC;

-- name: max_event_id
SELECT coalesce(max(id), 0) FROM ledger_events;

-- name: last_seal
SELECT id, at, max_event_id, calls, heads_sha256, prev_hash, hash
FROM ledger_seals ORDER BY id DESC LIMIT 1;

-- name: all_seals
SELECT id, at, max_event_id, calls, heads_sha256, prev_hash, hash FROM ledger_seals ORDER BY id;

-- name: insert_seal
INSERT INTO ledger_seals (max_event_id, calls, heads_sha256, prev_hash, hash)
VALUES ($1, $2, $3, $4, $5)
RETURNING id;

-- name: seal_lock
SELECT pg_try_advisory_xact_lock(7061626);
