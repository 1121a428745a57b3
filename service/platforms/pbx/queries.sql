-- name: call_exists
SELECT 1 FROM calls WHERE platform = $1 AND external_id = $2;

-- name: call_id
SELECT id FROM calls WHERE platform = $1 AND external_id = $2;
