-- Retention, legal holds, data-subject requests, the audit trail, and API tokens.

-- The version S3 gave the stored object, so a purge deletes that version, not just the key.
ALTER TABLE recordings ADD COLUMN object_version text;
ALTER TABLE recordings ADD COLUMN purged_at timestamptz;

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('telephony', 'qa_trainer', 'compliance', 'admin')),
    token_sha256 bytea NOT NULL CONSTRAINT api_tokens_token_sha256_key UNIQUE,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- A hold on one call, or on a phone number (every call of that number, future ones too).
CREATE TABLE holds (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    call_id     uuid REFERENCES calls (id),
    phone_hash  bytea,
    phone_enc   bytea,
    reason      text NOT NULL CHECK (btrim(reason) <> ''),
    case_ref    text,
    placed_by   text NOT NULL,
    placed_at   timestamptz NOT NULL DEFAULT now(),
    released_by text,
    released_at timestamptz,
    CONSTRAINT holds_one_target CHECK ((call_id IS NULL) <> (phone_hash IS NULL))
);
CREATE INDEX holds_active_call_idx ON holds (call_id) WHERE released_at IS NULL;
CREATE INDEX holds_active_phone_idx ON holds (phone_hash) WHERE released_at IS NULL;

CREATE TABLE dsar_requests (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind         text NOT NULL CHECK (kind IN ('access', 'erase', 'withdraw')),
    status       text NOT NULL DEFAULT 'received'
                 CHECK (status IN ('received', 'waiting_for_hold', 'completed', 'failed')),
    phone_hash   bytea,          -- destroyed once an erasure completes
    phone_enc    bytea,          -- likewise
    requested_by text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    due_at       timestamptz NOT NULL,
    completed_at timestamptz,
    bundle_key   text,
    result       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX dsar_requests_open_idx ON dsar_requests (due_at) WHERE status <> 'completed';

CREATE FUNCTION append_only_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

-- Who did what, and why: append-only like the ledger.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    target_type text,
    target_id   text,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION append_only_refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION append_only_refuse_change();
