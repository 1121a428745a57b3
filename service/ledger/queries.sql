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
-- before it). The shared advisory lock is taken before any id is drawn (the sort below reads
-- every joined row, and so the lock, before the first row reaches the insert) and held until
-- commit: a seal's bound never passes an id still to be committed (service.ledger.seals).
-- The details come as the canonical JSON text their hash covers, parsed here (asyncpg would
-- otherwise encode each dict again with json.dumps).
WITH writer AS (SELECT pg_advisory_xact_lock_shared(7061627))
INSERT INTO ledger_events (call_id, seq, type, at, details, dedupe_key, prev_hash, hash)
SELECT e.call_id, e.seq, e.type, e.at, e.details::jsonb, e.dedupe_key, e.prev_hash, e.hash
FROM writer, unnest($1::uuid[], $2::int[], $3::text[], $4::timestamptz[],
                    $5::text[], $6::text[], $7::bytea[], $8::bytea[])
    AS e (call_id, seq, type, at, details, dedupe_key, prev_hash, hash)
ORDER BY 1, 2;

-- name: call_events
SELECT call_id, seq, type, at, details, dedupe_key, prev_hash, hash
FROM ledger_events WHERE call_id = $1 ORDER BY seq;

-- name: all_events
SELECT call_id, seq, type, at, details, dedupe_key, prev_hash, hash, id, tenant_id
FROM ledger_events ORDER BY call_id, seq;

-- name: calls_without_events
SELECT c.id FROM calls c
WHERE NOT EXISTS (SELECT 1 FROM ledger_events e WHERE e.call_id = c.id)
ORDER BY c.id;

-- name: call_exists
SELECT EXISTS (SELECT 1 FROM calls WHERE id = $1);

-- name: lock_calls
-- Locks the calls in id order and counts them: the rows themselves are not needed (a purge
-- batch locks a thousand).
SELECT count(*) FROM (SELECT id FROM calls WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE) c;

-- name: chain_heads
SELECT DISTINCT ON (call_id) call_id, seq, hash FROM ledger_events
WHERE call_id = ANY($1::uuid[])
ORDER BY call_id, seq DESC;

-- name: clock
SELECT clock_timestamp();

-- name: writers_barrier
-- Granted once every transaction holding the shared lock (insert_events) has ended.
SELECT pg_advisory_xact_lock(7061627);

-- name: heads_upto
-- Every call's chain head among a tenant's events up to a given id, in call order.
SELECT DISTINCT ON (call_id) call_id, seq, hash FROM ledger_events
WHERE id <= $1 AND tenant_id = $2
ORDER BY call_id, seq DESC;

-- name: max_event_id
SELECT coalesce(max(id), 0) FROM ledger_events WHERE tenant_id = $1;

-- name: last_seal
SELECT id, at, format, max_event_id, calls, heads_sha256, root, tree_size, prev_hash, hash
FROM ledger_seals WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1;

-- name: seals_of_tenants
SELECT id, tenant_id, at, format, max_event_id, calls, heads_sha256, root, tree_size, prev_hash,
       hash
FROM ledger_seals WHERE tenant_id = ANY($1::text[]) ORDER BY tenant_id, id;

-- name: visible_tenants
-- The tenants this connection may see (one, or every one as '*').
SELECT id FROM tenants
WHERE id = current_setting('callvault.tenant', true) OR current_setting('callvault.tenant', true) = '*'
ORDER BY id;

-- name: insert_seal_v2
INSERT INTO ledger_seals (tenant_id, at, format, max_event_id, calls, tree_size, root,
                          prev_hash, hash)
VALUES ($1, $2, 2, $3, $4::integer, $4::bigint, $5, $6, $7)
RETURNING id;

-- name: seal_lock
-- One replica seals a tenant at a time; tenants seal independently.
SELECT pg_try_advisory_xact_lock(7061626, hashtext($1));

-- name: covering_seal
-- The newest format-2 seal of the call's tenant that covers some event of the call, with the
-- call's chain head as of that seal.
SELECT s.id, s.at, s.max_event_id, s.tree_size, s.root, s.prev_hash, s.hash, s.tenant_id,
       h.seq AS head_seq, h.hash AS head
FROM ledger_seals s
JOIN LATERAL (
    SELECT e.seq, e.hash FROM ledger_events e
    WHERE e.call_id = $1 AND e.tenant_id = s.tenant_id AND e.id <= s.max_event_id
    ORDER BY e.seq DESC LIMIT 1
) h ON true
WHERE s.tenant_id = $2 AND s.format = 2
ORDER BY s.id DESC LIMIT 1;

-- name: seal_clock
-- When the tenant was last sealed, and the database's now.
SELECT (SELECT max(at) FROM ledger_seals WHERE tenant_id = $1) AS last_at, now() AS now;
