-- name: uploaded_recording
-- What an upload compares itself with, and the call's retention for a first store.
SELECT r.state, r.sha256, r.size_bytes, r.retain_until, c.policy
FROM recordings r JOIN calls c ON c.id = r.call_id
WHERE r.id = $1;
