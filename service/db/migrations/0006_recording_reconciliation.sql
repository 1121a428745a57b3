-- Lost recording callbacks: Twilio retries a recording status callback at most once by default,
-- so a call that ended without one is looked up in Twilio's Recordings list. One row per call
-- that the reconciler took up: how often it asked, whether the answer settled it, and a short
-- claim so that replicas running the same pass never ask about the same call at once.
CREATE TABLE recording_reconciliations (
    call_id         uuid PRIMARY KEY REFERENCES calls (id),
    attempts        integer NOT NULL DEFAULT 0,   -- listings asked for (answered or not)
    claimed_until   timestamptz,                  -- a replica is asking now; others skip it
    last_attempt_at timestamptz,
    settled_at      timestamptz,                  -- every recording listed was terminal
    found           integer NOT NULL DEFAULT 0,   -- recordings handed on as lost callbacks
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recording_reconciliations_open_idx
    ON recording_reconciliations (last_attempt_at) WHERE settled_at IS NULL;

-- "Has this call had a recording callback?" is asked for every ended call.
CREATE INDEX recording_callbacks_call_idx ON recording_callbacks (platform, call_sid);
