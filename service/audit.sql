-- name: insert
INSERT INTO audit_log (actor, action, target_type, target_id, details)
VALUES ($1, $2, $3, $4, $5);

-- name: select
SELECT id, at, actor, action, target_type, target_id, details FROM audit_log
WHERE ($1::timestamptz IS NULL OR at >= $1)
  AND ($2::timestamptz IS NULL OR at < $2)
  AND ($3::text IS NULL OR actor = $3)
  AND ($4::text IS NULL OR action = $4)
ORDER BY at DESC, id DESC
LIMIT $5;
