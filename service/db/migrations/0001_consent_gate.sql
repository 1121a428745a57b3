-- The consent gate: calls, their tamper-evident ledger, and the do-not-record list.

CREATE TABLE calls (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    platform        text NOT NULL,
    external_id     text NOT NULL,
    caller_enc      bytea,          -- AES-GCM ciphertext of the caller's number (never plain)
    caller_hash     bytea,          -- HMAC-SHA256 of the normalised number, for lookups
    called          text,           -- the contact centre's own number (not personal data)
    policy          jsonb NOT NULL, -- the policy in force when the call started
    outcome         text NOT NULL DEFAULT 'in_progress' CHECK (outcome IN (
                        'in_progress', 'consented', 'refused', 'hung_up_during_notice',
                        'no_input', 'not_asked')),
    outcome_at      timestamptz,
    platform_status text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    CONSTRAINT calls_platform_external_id_key UNIQUE (platform, external_id),
    CONSTRAINT calls_outcome_at_set CHECK ((outcome = 'in_progress') = (outcome_at IS NULL))
);
CREATE INDEX calls_started_at_idx ON calls (started_at);
CREATE INDEX calls_caller_hash_idx ON calls (caller_hash);

CREATE TABLE do_not_record (
    phone_hash bytea PRIMARY KEY,
    reason     text NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT now()
);

-- One hash chain per call: each event carries the hash of the previous event of its call.
CREATE TABLE ledger_events (
    id         bigserial PRIMARY KEY,
    call_id    uuid NOT NULL REFERENCES calls (id),
    seq        integer NOT NULL CHECK (seq >= 1),
    type       text NOT NULL,
    at         timestamptz NOT NULL,
    details    jsonb NOT NULL DEFAULT '{}'::jsonb,
    dedupe_key text,
    prev_hash  bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash       bytea NOT NULL CHECK (length(hash) = 32),
    CONSTRAINT ledger_events_call_seq_key UNIQUE (call_id, seq),
    CONSTRAINT ledger_events_call_dedupe_key UNIQUE (call_id, dedupe_key)
);

CREATE FUNCTION ledger_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_events is append-only: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER ledger_events_no_update_delete
    BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_refuse_change();

CREATE TRIGGER ledger_events_no_truncate
    BEFORE TRUNCATE ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_refuse_change();

-- The database itself keeps chains linear: event n+1 must name event n's hash.
CREATE FUNCTION ledger_events_check_link() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    previous bytea;
BEGIN
    IF NEW.seq = 1 THEN
        IF NEW.prev_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea THEN
            RAISE EXCEPTION 'ledger: first event of call % must start from the genesis hash', NEW.call_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END IF;
    SELECT hash INTO previous FROM ledger_events WHERE call_id = NEW.call_id AND seq = NEW.seq - 1;
    IF previous IS NULL OR previous <> NEW.prev_hash THEN
        RAISE EXCEPTION 'ledger: event % of call % does not follow its predecessor', NEW.seq, NEW.call_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER ledger_events_link
    BEFORE INSERT ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_check_link();
