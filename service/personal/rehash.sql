-- Each table pages by its key (returned as "key", with the ciphertext and hash read) and is
-- updated with (key, new hash, the ciphertext read, the hash read), answering 1 when it changed
-- the row. Compare-and-set: a row an erasure, a release or a rotation changed since the page
-- was read is left alone.

-- name: calls_page
SELECT id AS key, caller_enc AS phone_enc, caller_hash AS phone_hash FROM calls
WHERE caller_enc IS NOT NULL AND id > $1
ORDER BY id LIMIT $2;

-- name: rehash_call
UPDATE calls SET caller_hash = $2
WHERE id = $1 AND caller_enc = $3 AND caller_hash IS NOT DISTINCT FROM $4
RETURNING 1;

-- name: do_not_record_page
SELECT phone_hash AS key, phone_enc, phone_hash FROM do_not_record
WHERE phone_enc IS NOT NULL AND phone_hash > $1
ORDER BY phone_hash LIMIT $2;

-- name: rehash_do_not_record
-- The hash is the key: where the number is on the list already under its new hash (it asked
-- again after normalisation changed), the entry under the old hash is the duplicate and goes.
WITH moved AS (
    UPDATE do_not_record o SET phone_hash = $2
    WHERE o.phone_hash = $1 AND o.phone_enc = $3 AND o.phone_hash = $4
      AND NOT EXISTS (
          SELECT 1 FROM do_not_record d WHERE d.tenant_id = o.tenant_id AND d.phone_hash = $2)
    RETURNING 1
), merged AS (
    DELETE FROM do_not_record o
    WHERE o.phone_hash = $1 AND o.phone_enc = $3 AND o.phone_hash = $4
      AND EXISTS (
          SELECT 1 FROM do_not_record d WHERE d.tenant_id = o.tenant_id AND d.phone_hash = $2)
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM merged);

-- name: holds_page
SELECT id AS key, phone_enc, phone_hash FROM holds
WHERE phone_enc IS NOT NULL AND id > $1
ORDER BY id LIMIT $2;

-- name: rehash_hold
UPDATE holds SET phone_hash = $2
WHERE id = $1 AND phone_enc = $3 AND phone_hash IS NOT DISTINCT FROM $4
RETURNING 1;

-- name: requests_page
SELECT id AS key, phone_enc, phone_hash FROM dsar_requests
WHERE phone_enc IS NOT NULL AND id > $1
ORDER BY id LIMIT $2;

-- name: rehash_request
UPDATE dsar_requests SET phone_hash = $2
WHERE id = $1 AND phone_enc = $3 AND phone_hash IS NOT DISTINCT FROM $4
RETURNING 1;

-- name: any_number_stored
-- (as '*': every tenant) whether any hashed number is kept at all; a new deployment has none
SELECT EXISTS (SELECT 1 FROM calls WHERE caller_enc IS NOT NULL)
    OR EXISTS (SELECT 1 FROM do_not_record WHERE phone_enc IS NOT NULL)
    OR EXISTS (SELECT 1 FROM holds WHERE phone_enc IS NOT NULL)
    OR EXISTS (SELECT 1 FROM dsar_requests WHERE phone_enc IS NOT NULL);

-- name: done
-- (as '*') the platform-wide audit entry a finished pass of this normalisation leaves
SELECT EXISTS (
    SELECT 1 FROM audit_log
    WHERE action = 'phone_hashes_rehashed' AND tenant_id IS NULL
      AND (details->>'normalisation')::int >= $1
);

-- name: tenants
SELECT id FROM tenants ORDER BY id;
