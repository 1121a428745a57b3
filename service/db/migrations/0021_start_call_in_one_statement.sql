-- A call's start in one statement, so the voice webhook makes one round trip (issue 18 goal 1)
-- instead of five (BEGIN, insert the call, insert its first events, COMMIT, and the tenant).
--
-- The call row is inserted as the `insert_call` query does (do-not-record check, outcome so far,
-- a retried start inserts nothing and returns no row), then its first two ledger events. Their
-- hashes need the call's id and the database's time, known only here, so the hash is computed
-- here over the same canonical body `service.ledger.event_hash` builds: the application passes
-- every piece it owns already in canonical JSON (the dedupe key, the details, the seq and the
-- type), the function adds the time, the call id and the previous hash. `ledger.verify`
-- recomputes every such hash in Python (tests/test_consent_gate.py checks them).
--
-- p_tenant (when not NULL) becomes `callvault.tenant` for the statement's transaction, so the
-- webhook's connection needs no round trip of its own to be given the tenant.
--
-- SECURITY INVOKER (the default): row-level security applies as to the statements it replaces;
-- the link and tenant triggers check every event. The shared writers' lock is taken before any
-- event id is drawn, as `insert_events` does, so a seal's bound never passes an uncommitted id.
--
-- p_events: the candidate second events, by outcome: [notice_played, not_asked because the
-- number is on the do-not-record list, not_asked because the policy never records]; the first
-- is call_started. Each event is (type, dedupe key, details as canonical JSON, the body's middle
-- from the dedupe key to the previous hash, the body's tail from the seq on), in arrays.

CREATE FUNCTION callvault_start_call(
    p_tenant text, p_platform text, p_external_id text, p_caller_enc bytea, p_caller_hash bytea,
    p_called text, p_policy jsonb, p_never_record boolean, p_hashes bytea[],
    p_direction text, p_platform_account text,
    p_types text[], p_keys text[], p_details text[], p_mids text[], p_tails text[])
RETURNS TABLE (id uuid, outcome text, policy jsonb, ended_at timestamptz, at timestamptz,
               listed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    on_list boolean;
    pick int;
    stamp text;
    prev bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    digest bytea;
    i int;
BEGIN
    IF p_tenant IS NOT NULL THEN
        -- the caller's tenant for this transaction only: the webhook's connection was lent
        -- without a round trip to set it (service.db.tenancy.named_in_statement)
        PERFORM set_config('callvault.tenant', p_tenant, true);
    END IF;
    on_list := EXISTS (SELECT 1 FROM do_not_record d WHERE d.phone_hash = ANY(p_hashes));
    INSERT INTO calls AS c (platform, external_id, caller_enc, caller_hash, called, policy,
                            outcome, outcome_at, direction, platform_account)
    VALUES (p_platform, p_external_id, p_caller_enc, p_caller_hash, p_called, p_policy,
            CASE WHEN p_never_record OR on_list THEN 'not_asked' ELSE 'in_progress' END,
            CASE WHEN p_never_record OR on_list THEN now() END,
            p_direction, p_platform_account)
    ON CONFLICT (platform, external_id, tenant_id) DO NOTHING
    RETURNING c.id, c.outcome, c.policy, c.ended_at, clock_timestamp()
    INTO id, outcome, policy, ended_at, at;
    IF NOT FOUND THEN
        RETURN;  -- the platform retried the start: the caller answers from the existing row
    END IF;
    listed := on_list;
    pick := CASE WHEN outcome = 'in_progress' THEN 2 WHEN on_list THEN 3 ELSE 4 END;
    -- Python's datetime.isoformat(timespec="microseconds") of the time in UTC
    stamp := to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"');
    PERFORM pg_advisory_xact_lock_shared(7061627);
    FOREACH i IN ARRAY ARRAY[1, pick] LOOP
        digest := sha256(convert_to(
            E'callvault-ledger-v1\n{"at":"' || stamp || '","call_id":"' || id::text
            || p_mids[i] || encode(prev, 'hex') || p_tails[i], 'UTF8'));
        INSERT INTO ledger_events (call_id, seq, type, at, details, dedupe_key, prev_hash, hash)
        VALUES (id, CASE WHEN i = 1 THEN 1 ELSE 2 END, p_types[i], at, p_details[i]::jsonb,
                p_keys[i], prev, digest);
        prev := digest;
    END LOOP;
    RETURN NEXT;
END
$$;
