-- name: call_exists
SELECT 1 FROM calls WHERE platform = $1 AND external_id = $2;
