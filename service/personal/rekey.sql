-- Each table pages by its key (returned as "key") and is updated with (key, hash, ciphertext,
-- the ciphertext that was read). Compare-and-set: a row changed since the page was read (an
-- erasure destroyed the number, a hold forgot it) is left alone, never written back.

-- name: calls_page
SELECT id AS key, caller_enc AS phone_enc FROM calls
WHERE caller_enc IS NOT NULL AND id > $1
ORDER BY id LIMIT $2;

-- name: rekey_call
UPDATE calls SET caller_hash = $2, caller_enc = $3 WHERE id = $1 AND caller_enc = $4;

-- name: do_not_record_page
SELECT phone_hash AS key, phone_enc FROM do_not_record
WHERE phone_enc IS NOT NULL AND phone_hash > $1
ORDER BY phone_hash LIMIT $2;

-- name: rekey_do_not_record
UPDATE do_not_record SET phone_hash = $2, phone_enc = $3
WHERE phone_hash = $1 AND phone_enc = $4;

-- name: holds_page
SELECT id AS key, phone_enc FROM holds WHERE phone_enc IS NOT NULL AND id > $1
ORDER BY id LIMIT $2;

-- name: rekey_hold
UPDATE holds SET phone_hash = $2, phone_enc = $3 WHERE id = $1 AND phone_enc = $4;

-- name: requests_page
SELECT id AS key, phone_enc FROM dsar_requests WHERE phone_enc IS NOT NULL AND id > $1
ORDER BY id LIMIT $2;

-- name: rekey_request
UPDATE dsar_requests SET phone_hash = $2, phone_enc = $3 WHERE id = $1 AND phone_enc = $4;

-- name: statements_page
-- A correct request's statement (personal data, sealed like a number).
SELECT id AS key, statement_enc AS phone_enc FROM dsar_requests
WHERE statement_enc IS NOT NULL AND id > $1
ORDER BY id LIMIT $2;

-- name: rekey_statement
-- $2 (the lookup hash every table is given) means nothing for a statement: it is not stored.
UPDATE dsar_requests SET statement_enc = $3
WHERE id = $1 AND statement_enc = $4 AND $2::bytea IS NOT NULL;
