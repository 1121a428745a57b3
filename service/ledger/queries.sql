-- name: lock_call
-- Serialises appends to one call (never across calls). The head must be read by a separate,
-- later statement: in READ COMMITTED a statement that waited for the lock still sees the
-- snapshot it started with, so reading the head in this one would build on a stale head.
SELECT id FROM calls WHERE id = $1 FOR UPDATE;

-- name: chain_head
SELECT clock_timestamp() AS at,
       (SELECT seq FROM ledger_events WHERE call_id = $1 ORDER BY seq DESC LIMIT 1) AS seq,
       (SELECT hash FROM ledger_events WHERE call_id = $1 ORDER BY seq DESC LIMIT 1) AS hash;

-- name: existing_dedupe_keys
SELECT dedupe_key FROM ledger_events WHERE call_id = $1 AND dedupe_key = ANY($2::text[]);

-- name: insert_event
INSERT INTO ledger_events (call_id, seq, type, at, details, dedupe_key, prev_hash, hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

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
