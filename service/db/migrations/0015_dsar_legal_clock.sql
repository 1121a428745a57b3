-- Data-subject requests under Law 91/2025/QH15 and Decree 356/2025 (issue 15): five kinds, the
-- legal clock (acknowledge_by, one extension) and the actions on a request (acknowledge,
-- extend, reject, lift). Deadlines are computed by retention/clock.py from the database's now().

ALTER TABLE dsar_requests DROP CONSTRAINT dsar_requests_kind_check;
ALTER TABLE dsar_requests ADD CONSTRAINT dsar_requests_kind_check
    CHECK (kind IN ('access', 'correct', 'erase', 'withdraw', 'restrict'));

-- 'failed' was allowed but never written (a request whose job fails is retried, then
-- dead-lettered, and stays open): a row that has it is open work, so in_progress, and says so.
UPDATE dsar_requests SET status = 'in_progress',
    result = result || jsonb_build_object('status_before_0015', status)
WHERE status = 'failed';
ALTER TABLE dsar_requests DROP CONSTRAINT dsar_requests_status_check;
ALTER TABLE dsar_requests ADD CONSTRAINT dsar_requests_status_check
    CHECK (status IN ('received', 'acknowledged', 'in_progress', 'waiting_for_hold', 'in_force',
                      'completed', 'rejected'));

ALTER TABLE dsar_requests
    -- NULL on requests received before this migration: Decree 13/2023 had no such step, and
    -- their due_at (CALLVAULT_DSAR_DEADLINE at the time) is kept as it was promised.
    ADD COLUMN acknowledge_by timestamptz,
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN acknowledged_by text,
    -- the policy that set the clock (time zone, days, processor, holidays release)
    ADD COLUMN clock jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- one extension: the deadline before it, by how many days, why, who, when
    ADD COLUMN due_before_extension timestamptz,
    ADD COLUMN extension_days integer CONSTRAINT dsar_requests_extension_days_check
        CHECK (extension_days BETWEEN 1 AND 15),
    ADD COLUMN extension_reason text,
    ADD COLUMN extended_by text,
    ADD COLUMN extended_at timestamptz,
    ADD COLUMN rejected_reason text,
    ADD COLUMN rejected_by text,
    ADD COLUMN rejected_at timestamptz,
    -- a restriction ends when lifted
    ADD COLUMN lifted_by text,
    ADD COLUMN lifted_at timestamptz,
    -- correct: the calls named, and what to do (attach the subject's statement, or unlink them
    -- from the number); the statement is personal data, encrypted like a phone number and
    -- destroyed with the number when the subject is erased
    ADD COLUMN call_ids uuid[] NOT NULL DEFAULT '{}',
    ADD COLUMN correction text CONSTRAINT dsar_requests_correction_check
        CHECK (correction IN ('statement', 'unlink')),
    ADD COLUMN statement_enc bytea;

UPDATE dsar_requests SET clock = jsonb_build_object('rule', 'before migration 0015: due_at from '
    'CALLVAULT_DSAR_DEADLINE, no acknowledgement deadline');

ALTER TABLE dsar_requests
    ADD CONSTRAINT dsar_requests_one_extension CHECK (
        (extension_days IS NULL) = (extended_at IS NULL)
        AND (extension_days IS NULL) = (due_before_extension IS NULL)
        AND (extension_days IS NULL OR btrim(coalesce(extension_reason, '')) <> '')),
    ADD CONSTRAINT dsar_requests_rejected_with_reason CHECK (
        status <> 'rejected' OR btrim(coalesce(rejected_reason, '')) <> ''),
    ADD CONSTRAINT dsar_requests_correct_says_what CHECK (
        (kind = 'correct') = (correction IS NOT NULL));

-- Open requests by deadline (overdue and due-soon figures, `dsar list --due-within`).
DROP INDEX dsar_requests_open_idx;
CREATE INDEX dsar_requests_open_idx ON dsar_requests (due_at)
    WHERE status NOT IN ('completed', 'rejected', 'in_force');
-- Restrictions in force, looked up by the number's hash on every playback.
CREATE INDEX dsar_requests_restricted_idx ON dsar_requests (phone_hash)
    WHERE kind = 'restrict' AND status = 'in_force';
