-- Periodic seals over the ledger: each folds every call's chain head (as of the newest event at
-- sealing time) into one digest and chains to the previous seal, so that deleting a whole call,
-- events and all, is detectable too.
CREATE TABLE ledger_seals (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    max_event_id  bigint NOT NULL,
    calls         integer NOT NULL,
    heads_sha256  bytea NOT NULL CHECK (length(heads_sha256) = 32),
    prev_hash     bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash          bytea NOT NULL CHECK (length(hash) = 32)
);

CREATE TRIGGER ledger_seals_no_update_delete
    BEFORE UPDATE OR DELETE ON ledger_seals
    FOR EACH ROW EXECUTE FUNCTION append_only_refuse_change();
CREATE TRIGGER ledger_seals_no_truncate
    BEFORE TRUNCATE ON ledger_seals
    FOR EACH STATEMENT EXECUTE FUNCTION append_only_refuse_change();
