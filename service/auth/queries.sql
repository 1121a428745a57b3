-- name: create_token
-- the tenant of the connection; '*' (the platform) makes a platform token: no tenant
INSERT INTO api_tokens (name, role, token_sha256, created_by, tenant_id)
VALUES ($1, $2, $3, $4, NULLIF(current_setting('callvault.tenant', true), '*'))
RETURNING id, name, role, created_at;

-- name: find_token
-- last_used_at is kept to the minute: a token's requests write it at most once a minute, so a
-- read (a trainer's list, the console's charts) does not make a commit wait on a WAL flush.
-- (The UPDATE did so on every request: 1 ms at p50 and 13-29 ms at p99 of a loaded
-- GET /api/calls on a million calls.)
WITH found AS (
    SELECT id, name, role, token_sha256, tenant_id, last_used_at FROM api_tokens
    WHERE token_sha256 = $1 AND revoked_at IS NULL
), touched AS (
    UPDATE api_tokens t SET last_used_at = now() FROM found
    WHERE t.id = found.id AND t.revoked_at IS NULL
      AND (found.last_used_at IS NULL OR found.last_used_at <= now() - interval '1 minute')
    RETURNING t.id
)
-- Where a write is due, the token stands only if the UPDATE found it unrevoked, having waited
-- for any revocation committing meanwhile (the snapshot above cannot see that one).
SELECT id, name, role, token_sha256, tenant_id FROM found
WHERE found.last_used_at > now() - interval '1 minute' OR EXISTS (SELECT 1 FROM touched);

-- name: list_tokens
SELECT id, name, role, tenant_id, created_by, created_at, last_used_at, revoked_at
FROM api_tokens ORDER BY created_at, id;

-- name: revoke_token
UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
RETURNING id;
