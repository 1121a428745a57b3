-- name: create_token
-- the tenant of the connection; '*' (the platform) makes a platform token: no tenant
INSERT INTO api_tokens (name, role, token_sha256, created_by, tenant_id)
VALUES ($1, $2, $3, $4, NULLIF(current_setting('callvault.tenant', true), '*'))
RETURNING id, name, role, created_at;

-- name: find_token
UPDATE api_tokens SET last_used_at = now()
WHERE token_sha256 = $1 AND revoked_at IS NULL
RETURNING id, name, role, token_sha256, tenant_id;

-- name: list_tokens
SELECT id, name, role, tenant_id, created_by, created_at, last_used_at, revoked_at
FROM api_tokens ORDER BY created_at, id;

-- name: revoke_token
UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
RETURNING id;
