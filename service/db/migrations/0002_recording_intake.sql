-- Recording intake: a durable job queue, the recordings we keep, and callback deduplication.

CREATE TABLE jobs (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    dedupe_key       text CONSTRAINT jobs_dedupe_key_key UNIQUE,
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,   -- runs that started (a deferral gives one back)
    max_attempts     integer NOT NULL DEFAULT 12,
    run_after        timestamptz NOT NULL DEFAULT now(),
    lease_token      uuid,                          -- fencing token of the current run
    lease_expires_at timestamptz,
    locked_by        text,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CONSTRAINT jobs_lease_when_running CHECK ((state = 'running') = (lease_token IS NOT NULL))
);
CREATE INDEX jobs_queued_idx ON jobs (run_after) WHERE state = 'queued';
CREATE INDEX jobs_running_idx ON jobs (lease_expires_at) WHERE state = 'running';

-- Every (recording, status) a platform reported, once: retries and duplicates stop here.
CREATE TABLE recording_callbacks (
    platform      text NOT NULL,
    recording_sid text NOT NULL,
    status        text NOT NULL,
    call_sid      text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, recording_sid, status)
);

-- The recordings of consented calls that callvault keeps (or kept).
CREATE TABLE recordings (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    call_id             uuid NOT NULL REFERENCES calls (id),
    platform            text NOT NULL,
    external_id         text NOT NULL,     -- the platform's recording id (Twilio RecordingSid)
    state               text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'stored', 'purged', 'erased', 'failed')),
    object_key          text,
    sha256              text,
    size_bytes          bigint,
    content_type        text,
    duration_s          integer,
    retain_until        timestamptz,
    stored_at           timestamptz,
    platform_deleted_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT recordings_platform_external_id_key UNIQUE (platform, external_id),
    CONSTRAINT recordings_stored_complete CHECK (
        state <> 'stored' OR (object_key IS NOT NULL AND sha256 IS NOT NULL
                              AND size_bytes IS NOT NULL AND retain_until IS NOT NULL))
);
CREATE INDEX recordings_call_id_idx ON recordings (call_id);
CREATE INDEX recordings_retain_until_idx ON recordings (retain_until) WHERE state = 'stored';
