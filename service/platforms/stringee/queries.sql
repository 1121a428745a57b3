-- name: called_number
-- The contact centre's number of a call (kept plain), to find its continue_scco again.
SELECT called FROM calls WHERE platform = 'stringee' AND external_id = $1;

-- name: call_known
SELECT EXISTS (SELECT 1 FROM calls WHERE platform = 'stringee' AND external_id = $1);
