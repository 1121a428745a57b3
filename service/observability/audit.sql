-- name: insert
-- in the trail of the transaction's tenant; the platform's own actions ('*') in none (NULL)
INSERT INTO audit_log (actor, action, target_type, target_id, details, tenant_id)
VALUES ($1, $2, $3, $4, $5, NULLIF(current_setting('callvault.tenant', true), '*'));

-- name: select
SELECT id, at, actor, action, target_type, target_id, details FROM audit_log
WHERE ($1::timestamptz IS NULL OR at >= $1)
  AND ($2::timestamptz IS NULL OR at < $2)
  AND ($3::text IS NULL OR actor = $3)
  AND ($4::text IS NULL OR action = $4)
  -- $6, $7: the page's start, after the last row of the one before (keyset, id breaks ties)
  AND ($6::timestamptz IS NULL OR (at, id) < ($6, $7::bigint))
ORDER BY at DESC, id DESC
LIMIT $5;
