-- name: find_call
-- A call of the connection's tenant (row-level security) by callvault's id or by the platform's
-- call id: a Twilio CallSid, a Stringee callId, a PBX's own id (an Asterisk UNIQUEID).
-- Listed per platform so that the (platform, external_id, tenant_id) key serves the lookup.
SELECT id FROM calls
WHERE id = $1::uuid
   OR (platform, external_id) IN (('twilio', $2::text), ('stringee', $2::text), ('pbx', $2::text))
LIMIT 2;

-- name: lock_call
-- The row stays locked until the transaction ends: pause and resume of one call are decided one
-- at a time (and the platform asked at most once per decision).
SELECT id, tenant_id, platform, external_id, platform_account, outcome, ended_at
FROM calls WHERE id = $1 FOR UPDATE;

-- name: paused_since
-- When the call's recording was paused, if it is: its last pause or resume event is a pause.
-- A statement of its own, after the lock: in READ COMMITTED it sees what the transaction that
-- held the lock before committed (a pause that just happened).
SELECT CASE WHEN type = 'recording_paused' THEN at END FROM ledger_events
WHERE call_id = $1 AND type IN ('recording_paused', 'recording_resumed')
ORDER BY seq DESC LIMIT 1;

-- name: pause_events
-- What the QA page needs to place pauses on a recording: when recording started (consent), and
-- each pause and resume.
SELECT call_id, type, at, details FROM ledger_events
WHERE call_id = ANY($1::uuid[])
  AND type IN ('consent_given', 'recording_paused', 'recording_resumed')
ORDER BY call_id, seq;

-- name: claim
-- Claim the call's pause or resume while the platform is asked (after lock_call, in the same
-- short transaction as the state check). No row back: another is under way (its action in
-- `held`). A claim older than $4 seconds is from a request that died: taken over.
WITH taken AS (
    INSERT INTO pause_claims (call_id, tenant_id, action, token)
    VALUES ($1, $2, $3, $5)
    ON CONFLICT (call_id) DO UPDATE
        SET action = EXCLUDED.action, token = EXCLUDED.token, claimed_at = now()
        WHERE pause_claims.claimed_at < now() - make_interval(secs => $4)
    RETURNING token
)
SELECT (SELECT token FROM taken) AS token,
       (SELECT action FROM pause_claims WHERE call_id = $1) AS held;

-- name: release
-- The claim is done with (the ledger event written in the same transaction, or the platform
-- failed): only this request's claim, not one that took over a stale one.
DELETE FROM pause_claims WHERE call_id = $1 AND token = $2;
