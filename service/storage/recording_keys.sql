-- name: recording_for_key
-- The recording a data key is issued for, locked against an erasure deciding meanwhile.
SELECT tenant_id, state FROM recordings WHERE id = $1 FOR SHARE;

-- name: wrapped_key
SELECT tenant_id, wrapped_key, wrapper, kms_key_arn FROM recording_keys WHERE recording_id = $1;

-- name: insert_key
-- No row back: another transaction issued this recording's key first, and that one is its key.
INSERT INTO recording_keys (recording_id, format, wrapped_key, kek_id, wrapper, kms_key_arn)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (recording_id) DO NOTHING
RETURNING recording_id;

-- name: destroy_keys
-- Shredding: the wrapped data keys of these recordings, gone (with the call each belongs to,
-- for its ledger).
DELETE FROM recording_keys k
USING recordings r
WHERE r.id = k.recording_id AND k.recording_id = ANY($1::uuid[])
RETURNING k.recording_id, r.call_id;

-- name: shredded_among
-- Of these recordings, the ones shredded while their row still says stored: the data key is
-- gone and the ledger says it was destroyed (a purge whose store refused the object, which the
-- next pass deletes). One stored before issue 17 has no key and no such event: still readable.
SELECT r.id
FROM recordings r
WHERE r.id = ANY($1::uuid[])
  AND NOT EXISTS (SELECT 1 FROM recording_keys k WHERE k.recording_id = r.id)
  AND EXISTS (SELECT 1 FROM ledger_events e
              WHERE e.call_id = r.call_id AND e.dedupe_key = 'key_destroyed:' || r.id::text);

-- name: keys_page
-- A page of data keys in key order, after $1.
SELECT recording_id AS key, tenant_id, wrapped_key, wrapper, kms_key_arn
FROM recording_keys
WHERE recording_id > $1
ORDER BY recording_id
LIMIT $2;

-- name: rewrap_key
-- Compare-and-set on the wrapped key that was read: a key shredded meanwhile stays shredded.
UPDATE recording_keys
SET wrapped_key = $3, kek_id = $4, wrapper = $5, kms_key_arn = $6,
    key_version = key_version + 1, rewrapped_at = now()
WHERE recording_id = $1 AND wrapped_key = $2;

-- name: stored_page
-- Stored recordings in id order after $1 (sealing the ones stored before issue 17).
SELECT id, tenant_id, object_key, object_store, sha256, size_bytes, content_type
FROM recordings
WHERE state = 'stored' AND object_key IS NOT NULL AND id > $1
ORDER BY id
LIMIT $2;

-- name: lock_stored
-- Held while a recording is sealed in place: a purge skips it, an erasure waits for it.
SELECT state FROM recordings WHERE id = $1 FOR SHARE;

-- name: set_object_version
UPDATE recordings SET object_version = $2 WHERE id = $1 AND state = 'stored';
