-- name: current_key
SELECT id, public_key, private_key_enc, created_at FROM receipt_keys
WHERE tenant_id = $1 AND retired_at IS NULL;

-- name: insert_key
-- At most one current key per tenant (partial unique index): a second replica creating the
-- first key at the same moment inserts nothing and reads the winner's.
INSERT INTO receipt_keys (id, tenant_id, public_key, private_key_enc)
VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id) WHERE retired_at IS NULL DO NOTHING
RETURNING id;

-- name: retire_current_key
UPDATE receipt_keys SET retired_at = now()
WHERE tenant_id = $1 AND retired_at IS NULL
RETURNING id;

-- name: keys_of_tenant
SELECT id, public_key, created_at, retired_at FROM receipt_keys
WHERE tenant_id = $1 ORDER BY created_at, id;

-- name: keys_page
-- For `callvault secrets rotate`: every tenant's keys, by id.
SELECT id, tenant_id, private_key_enc FROM receipt_keys WHERE id > $1 ORDER BY id LIMIT $2;

-- name: rekey_key
UPDATE receipt_keys SET private_key_enc = $2 WHERE id = $1 AND private_key_enc = $3;

-- name: tenant_name
SELECT name FROM tenants WHERE id = $1;

-- name: call_for_receipt
SELECT id, platform, external_id, direction, caller_enc, called, started_at, ended_at,
       outcome, erased_at
FROM calls WHERE id = $1 AND tenant_id = $2;
