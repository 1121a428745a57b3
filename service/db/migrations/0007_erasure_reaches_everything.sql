-- Erasure reaches everything of the subject: calls remember that (and when, and by which
-- request) they were erased, so a recording arriving later is discarded; access bundles expire
-- and are removed; a finished phone hold can forget its number; a request can wait for intake.

ALTER TABLE calls ADD COLUMN erased_at timestamptz;
ALTER TABLE calls ADD COLUMN erased_by uuid;  -- the data-subject request that erased the call
CREATE INDEX calls_erased_by_idx ON calls (erased_by) WHERE erased_by IS NOT NULL;

-- Bundles: when the bundle stops being handed out, and when and why it left the store.
ALTER TABLE dsar_requests ADD COLUMN bundle_expires_at timestamptz;
ALTER TABLE dsar_requests ADD COLUMN bundle_removed_at timestamptz;
ALTER TABLE dsar_requests ADD COLUMN bundle_removed_reason text
    CHECK (bundle_removed_reason IN ('expired', 'erased'));
CREATE INDEX dsar_requests_bundle_expiry_idx ON dsar_requests (bundle_expires_at)
    WHERE bundle_key IS NOT NULL;
-- A one-way digest of the number under its own derived key (not the lookup hash), kept by
-- erase and withdraw requests so a hold placed later can say the number's calls were erased.
ALTER TABLE dsar_requests ADD COLUMN subject_digest bytea;
CREATE INDEX dsar_requests_subject_digest_idx ON dsar_requests (subject_digest)
    WHERE subject_digest IS NOT NULL;

-- in_progress: the erasure is done but an intake of the subject's calls is still running.
ALTER TABLE dsar_requests DROP CONSTRAINT dsar_requests_status_check;
ALTER TABLE dsar_requests ADD CONSTRAINT dsar_requests_status_check
    CHECK (status IN ('received', 'in_progress', 'waiting_for_hold', 'completed', 'failed'));

-- A released hold on a number forgets the number when the number is erased.
ALTER TABLE holds DROP CONSTRAINT holds_one_target;
ALTER TABLE holds ADD CONSTRAINT holds_one_target CHECK (
    (call_id IS NULL) <> (phone_hash IS NULL)
    OR (call_id IS NULL AND phone_hash IS NULL AND phone_enc IS NULL
        AND released_at IS NOT NULL));
