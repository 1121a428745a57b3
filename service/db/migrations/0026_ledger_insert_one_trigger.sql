-- Less work per ledger event (issue 18 goals 1 and 3): every event went through two BEFORE
-- INSERT triggers (ledger_events_link: the chain check; ledger_events_tenant: tenant_of_call),
-- each a PL/pgSQL call with its own query, and callvault_start_call inserted its two events
-- with two INSERT statements, each starting an executor (check constraints, row-level
-- security, foreign keys, five indexes) of its own. Profiled with perf on the backend: that
-- per-statement and per-trigger set-up, not the rows, is where the time went.
--
-- One trigger now does both checks, in one query, in the same order and with the same errors:
--   1. the link: the first event starts from the genesis hash; a later one names the hash of
--      the event before it (looked up under the writer's row-level security, as before);
--   2. the tenant: the event takes its call's tenant_id, the call looked up under the writer's
--      visibility; an invisible call is refused (foreign_key_violation), as tenant_of_call does.
-- Both values come from one statement with two scalar subqueries, each the query the old
-- trigger ran, so what each sees is unchanged. tenant_of_call stays for the other tables.

CREATE FUNCTION ledger_events_before_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    previous bytea;
    owner text;
BEGIN
    IF NEW.seq = 1 THEN
        IF NEW.prev_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea THEN
            RAISE EXCEPTION 'ledger: first event of call % must start from the genesis hash', NEW.call_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        owner := (SELECT c.tenant_id FROM calls AS c WHERE c.id = NEW.call_id);
    ELSE
        SELECT (SELECT e.hash FROM ledger_events AS e
                WHERE e.call_id = NEW.call_id AND e.seq = NEW.seq - 1),
               (SELECT c.tenant_id FROM calls AS c WHERE c.id = NEW.call_id)
        INTO previous, owner;
        IF previous IS NULL OR previous <> NEW.prev_hash THEN
            RAISE EXCEPTION 'ledger: event % of call % does not follow its predecessor', NEW.seq, NEW.call_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    IF NEW.call_id IS NOT NULL THEN  -- a NULL call_id is left to the NOT NULL constraint
        NEW.tenant_id := owner;
        IF owner IS NULL THEN
            RAISE EXCEPTION 'call % is not visible to tenant %', NEW.call_id,
                coalesce(current_setting('callvault.tenant', true), '(unset)')
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER ledger_events_link ON ledger_events;
DROP TRIGGER ledger_events_tenant ON ledger_events;
DROP FUNCTION ledger_events_check_link();
CREATE TRIGGER ledger_events_link_tenant BEFORE INSERT ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_before_insert();

-- The call's first two events in one INSERT (two rows, in chain order) instead of two: the
-- second row's hash is computed from the first's before the statement, as the two statements
-- did, and the trigger still checks the link (a BEFORE ROW trigger sees the rows the same
-- statement inserted before it). The do-not-record check joins the call's insert, and
-- set_config and the writers' lock are assignments rather than PERFORMs. Otherwise as 0021.
CREATE OR REPLACE FUNCTION callvault_start_call(
    p_tenant text, p_platform text, p_external_id text, p_caller_enc bytea, p_caller_hash bytea,
    p_called text, p_policy jsonb, p_never_record boolean, p_hashes bytea[],
    p_direction text, p_platform_account text,
    p_types text[], p_keys text[], p_details text[], p_mids text[], p_tails text[])
RETURNS TABLE (id uuid, outcome text, policy jsonb, ended_at timestamptz, at timestamptz,
               listed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    pick int;
    head text;
    first bytea;
    second bytea;
    done text;
BEGIN
    -- set_config and the lock by assignment, not PERFORM: an assignment of a plain function
    -- call is evaluated directly, PERFORM runs a whole SELECT through the executor
    IF p_tenant IS NOT NULL THEN
        -- the caller's tenant for this transaction only: the webhook's connection was lent
        -- without a round trip to set it (service.db.tenancy.named_in_statement)
        done := set_config('callvault.tenant', p_tenant, true);
    END IF;
    -- the do-not-record check inside the insert, as the insert_call query does: one
    -- statement, not two
    WITH dnr AS (
        SELECT EXISTS (SELECT 1 FROM do_not_record d WHERE d.phone_hash = ANY(p_hashes)) AS hit
    )
    INSERT INTO calls AS c (platform, external_id, caller_enc, caller_hash, called, policy,
                            outcome, outcome_at, direction, platform_account)
    SELECT p_platform, p_external_id, p_caller_enc, p_caller_hash, p_called, p_policy,
           CASE WHEN p_never_record OR dnr.hit THEN 'not_asked' ELSE 'in_progress' END,
           CASE WHEN p_never_record OR dnr.hit THEN now() END,
           p_direction, p_platform_account
    FROM dnr
    ON CONFLICT (platform, external_id, tenant_id) DO NOTHING
    RETURNING c.id, c.outcome, c.policy, c.ended_at, clock_timestamp(), (SELECT hit FROM dnr)
    INTO id, outcome, policy, ended_at, at, listed;
    IF NOT FOUND THEN
        RETURN;  -- the platform retried the start: the caller answers from the existing row
    END IF;
    pick := CASE WHEN outcome = 'in_progress' THEN 2 WHEN listed THEN 3 ELSE 4 END;
    -- the canonical body's start: Python's datetime.isoformat(timespec="microseconds") of the
    -- time in UTC, then the call id
    head := E'callvault-ledger-v1\n{"at":"'
        || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
        || '","call_id":"' || id::text;
    first := sha256(convert_to(
        head || p_mids[1] || '0000000000000000000000000000000000000000000000000000000000000000'
        || p_tails[1], 'UTF8'));
    second := sha256(convert_to(head || p_mids[pick] || encode(first, 'hex') || p_tails[pick],
                                'UTF8'));
    done := pg_advisory_xact_lock_shared(7061627);
    INSERT INTO ledger_events (call_id, seq, type, at, details, dedupe_key, prev_hash, hash)
    VALUES (id, 1, p_types[1], at, p_details[1]::jsonb, p_keys[1],
            '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, first),
           (id, 2, p_types[pick], at, p_details[pick]::jsonb, p_keys[pick], first, second);
    RETURN NEXT;
END
$$;
