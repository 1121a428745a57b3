-- name: tenant_exists
SELECT id FROM tenants WHERE id = $1;

-- name: stored_recordings
-- Every stored recording of the tenant (the tenant is also the connection's: row-level
-- security and this filter agree), oldest first so reruns walk the same order.
SELECT r.id, r.call_id, r.object_key, r.object_store, r.sha256, r.size_bytes, r.content_type,
       r.stored_at, c.platform, c.external_id
FROM recordings r JOIN calls c ON c.id = r.call_id
WHERE r.tenant_id = $1 AND r.state = 'stored'
ORDER BY r.stored_at, r.id;

-- name: ledger_events
SELECT id, call_id, seq, type, at, details, dedupe_key, prev_hash, hash
FROM ledger_events WHERE tenant_id = $1 ORDER BY call_id, seq;

-- name: ledger_seals
SELECT id, at, max_event_id, calls, heads_sha256, prev_hash, hash
FROM ledger_seals WHERE tenant_id = $1 ORDER BY id;
