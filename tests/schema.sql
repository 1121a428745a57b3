CREATE FUNCTION public.append_only_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE FUNCTION public.callvault_start_call(p_tenant text, p_platform text, p_external_id text, p_caller_enc bytea, p_caller_hash bytea, p_called text, p_policy jsonb, p_never_record boolean, p_hashes bytea[], p_direction text, p_platform_account text, p_types text[], p_keys text[], p_details text[], p_mids text[], p_tails text[]) RETURNS TABLE(id uuid, outcome text, policy jsonb, ended_at timestamp with time zone, at timestamp with time zone, listed boolean)
    LANGUAGE plpgsql
    AS $$
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
CREATE FUNCTION public.ledger_events_before_insert() RETURNS trigger
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
CREATE FUNCTION public.ledger_events_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'ledger_events is append-only: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE FUNCTION public.receipt_keys_only_retire() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'receipt keys are kept for ever (retire them instead)'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.id <> OLD.id OR NEW.tenant_id <> OLD.tenant_id OR NEW.public_key <> OLD.public_key
       OR NEW.created_at <> OLD.created_at
       OR (OLD.retired_at IS NOT NULL AND NEW.retired_at IS DISTINCT FROM OLD.retired_at) THEN
        RAISE EXCEPTION 'a receipt key changes only by being retired or re-encrypted'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE FUNCTION public.recording_keepers() RETURNS TABLE(recording_id uuid, keeper text, id uuid, target text, reason text, placed_at timestamp with time zone, kind text, status text, since timestamp with time zone)
    LANGUAGE sql STABLE
    AS $$
    SELECT r.id, 'hold', h.id, 'call', h.reason, h.placed_at, NULL, NULL, h.placed_at
    FROM holds h JOIN recordings r ON r.call_id = h.call_id AND r.tenant_id = h.tenant_id
    WHERE h.released_at IS NULL
    UNION ALL
    SELECT r.id, 'hold', h.id, 'phone', h.reason, h.placed_at, NULL, NULL, h.placed_at
    FROM holds h
    JOIN calls c ON c.caller_hash = h.phone_hash AND c.tenant_id = h.tenant_id
    JOIN recordings r ON r.call_id = c.id
    WHERE h.released_at IS NULL
    UNION ALL
    SELECT r.id, 'request', d.id, NULL, NULL, NULL, d.kind, d.status, d.received_at
    FROM dsar_requests d
    JOIN calls c ON c.caller_hash = d.phone_hash AND c.tenant_id = d.tenant_id
    JOIN recordings r ON r.call_id = c.id
    WHERE d.kind IN ('access', 'correct', 'restrict')
      AND d.status NOT IN ('completed', 'rejected', 'failed')
    UNION ALL
    -- a request that names calls (a restriction or correction of those calls) keeps their
    -- recordings too; one matched by the number already is not listed twice
    SELECT r.id, 'request', d.id, NULL, NULL, NULL, d.kind, d.status, d.received_at
    FROM dsar_requests d
    JOIN recordings r ON r.call_id = ANY(d.call_ids) AND r.tenant_id = d.tenant_id
    JOIN calls c ON c.id = r.call_id
    WHERE d.kind IN ('access', 'correct', 'restrict')
      AND d.status NOT IN ('completed', 'rejected', 'failed')
      AND c.caller_hash IS DISTINCT FROM d.phone_hash
$$;
CREATE FUNCTION public.recording_retention() RETURNS TABLE(id uuid, tenant_id text, call_id uuid, state text, retain_until timestamp with time zone, retention_source text, purged_at timestamp with time zone, holds jsonb, requests jsonb, purge_at timestamp with time zone)
    LANGUAGE sql STABLE
    AS $$
    SELECT r.id, r.tenant_id, r.call_id, r.state, r.retain_until, r.retention_source,
           r.purged_at,
           -- a hold or request keeps what exists: a purged or erased recording lists none
           CASE WHEN r.state IN ('stored', 'pending') THEN coalesce(
               (SELECT jsonb_agg(jsonb_build_object(
                           'id', k.id, 'reason', k.reason, 'placed_at', k.placed_at,
                           'on', k.target)
                       ORDER BY k.since, k.id)
                FROM recording_keepers() k WHERE k.recording_id = r.id AND k.keeper = 'hold'),
               '[]'::jsonb) ELSE '[]'::jsonb END,
           CASE WHEN r.state IN ('stored', 'pending') THEN coalesce(
               (SELECT jsonb_agg(jsonb_build_object(
                           'id', k.id, 'kind', k.kind, 'status', k.status)
                       ORDER BY k.since, k.id)
                FROM recording_keepers() k
                WHERE k.recording_id = r.id AND k.keeper = 'request'),
               '[]'::jsonb) ELSE '[]'::jsonb END,
           CASE WHEN r.state = 'stored'
                 AND NOT EXISTS (SELECT 1 FROM recording_keepers() k WHERE k.recording_id = r.id)
                THEN greatest(r.retain_until, now()) END
    FROM recordings r
$$;
CREATE FUNCTION public.tenant_of_call() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.call_id IS NOT NULL THEN
        NEW.tenant_id := (SELECT c.tenant_id FROM calls AS c WHERE c.id = NEW.call_id);
        IF NEW.tenant_id IS NULL THEN
            RAISE EXCEPTION 'call % is not visible to tenant %', NEW.call_id,
                coalesce(current_setting('callvault.tenant', true), '(unset)')
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE FUNCTION public.tenant_of_recording() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.tenant_id := (SELECT tenant_id FROM recordings WHERE id = NEW.recording_id);
    IF NEW.tenant_id IS NULL THEN
        RAISE EXCEPTION 'recording % is not visible to tenant %', NEW.recording_id,
            coalesce(current_setting('callvault.tenant', true), '(unset)')
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE FUNCTION public.tenant_storage_keep_former() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.bucket = OLD.bucket THEN
        RETURN NULL;  -- the same bucket (its credentials rotated, say): nothing was left
    END IF;
    -- (a tenant being deleted takes its storage with it: nothing to remember)
    INSERT INTO tenant_storage_former AS f
        (tenant_id, bucket, endpoint_url, region, sse, kms_key_id, credentials)
    SELECT OLD.tenant_id, OLD.bucket, OLD.endpoint_url, OLD.region, OLD.sse, OLD.kms_key_id,
           OLD.credentials
    WHERE EXISTS (SELECT 1 FROM tenants AS t WHERE t.id = OLD.tenant_id)
    ON CONFLICT (tenant_id, bucket) DO UPDATE
    SET endpoint_url = EXCLUDED.endpoint_url, region = EXCLUDED.region, sse = EXCLUDED.sse,
        kms_key_id = EXCLUDED.kms_key_id, credentials = EXCLUDED.credentials, left_at = now();
    RETURN NULL;
END
$$;
CREATE TABLE public.api_tokens (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    role text NOT NULL,
    token_sha256 bytea NOT NULL,
    created_by text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_used_at timestamp with time zone,
    revoked_at timestamp with time zone,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true),
    CONSTRAINT api_tokens_role_check CHECK ((role = ANY (ARRAY['telephony'::text, 'qa_trainer'::text, 'compliance'::text, 'admin'::text, 'operator'::text])))
);
ALTER TABLE ONLY public.api_tokens FORCE ROW LEVEL SECURITY;
CREATE TABLE public.audit_log (
    id bigint NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    target_type text,
    target_id text,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true)
);
ALTER TABLE ONLY public.audit_log FORCE ROW LEVEL SECURITY;
CREATE SEQUENCE public.audit_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.audit_log_id_seq OWNED BY public.audit_log.id;
CREATE TABLE public.calls (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    platform text DEFAULT 'twilio'::text NOT NULL,
    external_id text NOT NULL,
    caller_enc bytea,
    caller_hash bytea,
    called text,
    policy jsonb NOT NULL,
    outcome text DEFAULT 'in_progress'::text NOT NULL,
    outcome_at timestamp with time zone,
    platform_status text,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    ended_at timestamp with time zone,
    erased_at timestamp with time zone,
    erased_by uuid,
    direction text DEFAULT 'inbound'::text NOT NULL,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL,
    platform_account text,
    queue text GENERATED ALWAYS AS ((policy ->> 'queue'::text)) STORED,
    CONSTRAINT calls_direction_check CHECK ((direction = ANY (ARRAY['inbound'::text, 'outbound'::text]))),
    CONSTRAINT calls_outcome_at_set CHECK (((outcome = 'in_progress'::text) = (outcome_at IS NULL))),
    CONSTRAINT calls_outcome_check CHECK ((outcome = ANY (ARRAY['in_progress'::text, 'consented'::text, 'refused'::text, 'hung_up_during_notice'::text, 'no_input'::text, 'not_asked'::text]))),
    CONSTRAINT calls_platform_account_check CHECK ((platform_account <> ''::text))
);
ALTER TABLE ONLY public.calls FORCE ROW LEVEL SECURITY;
COMMENT ON COLUMN public.calls.caller_enc IS 'AES-GCM ciphertext of the data subject''s number (the caller on inbound calls, the callee on outbound ones); never plain';
COMMENT ON COLUMN public.calls.caller_hash IS 'HMAC-SHA256 of the data subject''s normalised number, for lookups; NULL once erased';
COMMENT ON COLUMN public.calls.called IS 'the contact centre''s own number (To on inbound calls, From on outbound ones); not personal data';
COMMENT ON COLUMN public.calls.direction IS 'inbound: the person called the contact centre; outbound: the contact centre called them';
COMMENT ON COLUMN public.calls.platform_account IS 'the platform account the call came through (Twilio AccountSid); NULL: the configured account of the tenant default';
CREATE TABLE public.callvault_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    sha256 text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE public.do_not_record (
    phone_hash bytea NOT NULL,
    reason text NOT NULL,
    added_at timestamp with time zone DEFAULT now() NOT NULL,
    phone_enc bytea,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL
);
ALTER TABLE ONLY public.do_not_record FORCE ROW LEVEL SECURITY;
CREATE TABLE public.dsar_requests (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    kind text NOT NULL,
    status text DEFAULT 'received'::text NOT NULL,
    phone_hash bytea,
    phone_enc bytea,
    requested_by text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    due_at timestamp with time zone NOT NULL,
    completed_at timestamp with time zone,
    bundle_key text,
    result jsonb DEFAULT '{}'::jsonb NOT NULL,
    bundle_expires_at timestamp with time zone,
    bundle_removed_at timestamp with time zone,
    bundle_removed_reason text,
    subject_digest bytea,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL,
    bundle_store text DEFAULT 'shared'::text NOT NULL,
    acknowledge_by timestamp with time zone,
    acknowledged_at timestamp with time zone,
    acknowledged_by text,
    clock jsonb DEFAULT '{}'::jsonb NOT NULL,
    due_before_extension timestamp with time zone,
    extension_days integer,
    extension_reason text,
    extended_by text,
    extended_at timestamp with time zone,
    rejected_reason text,
    rejected_by text,
    rejected_at timestamp with time zone,
    lifted_by text,
    lifted_at timestamp with time zone,
    call_ids uuid[] DEFAULT '{}'::uuid[] NOT NULL,
    correction text,
    statement_enc bytea,
    channel text,
    bundle_sealed boolean DEFAULT false NOT NULL,
    bundle_uploads jsonb DEFAULT '{}'::jsonb CONSTRAINT dsar_requests_bundle_uploads_not_null1 NOT NULL,
    CONSTRAINT dsar_requests_bundle_removed_reason_check CHECK ((bundle_removed_reason = ANY (ARRAY['expired'::text, 'erased'::text]))),
    CONSTRAINT dsar_requests_bundle_sealed_check CHECK (((NOT bundle_sealed) OR (kind = 'access'::text))),
    CONSTRAINT dsar_requests_bundle_store_check CHECK (((bundle_store = 'shared'::text) OR (bundle_store ~ '^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$'::text))),
    CONSTRAINT dsar_requests_bundle_uploads_check CHECK (((jsonb_typeof(bundle_uploads) = 'object'::text) AND (NOT jsonb_path_exists(bundle_uploads, '$.*?(@.type() != "string" || !(@ like_regex "^(shared|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])$"))'::jsonpath)))),
    CONSTRAINT dsar_requests_channel_check CHECK ((channel = ANY (ARRAY['phone'::text, 'email'::text, 'letter'::text, 'in_person'::text, 'web'::text]))),
    CONSTRAINT dsar_requests_correct_says_what CHECK (((kind = 'correct'::text) = (correction IS NOT NULL))),
    CONSTRAINT dsar_requests_correction_check CHECK ((correction = ANY (ARRAY['statement'::text, 'unlink'::text]))),
    CONSTRAINT dsar_requests_extension_days_check CHECK (((extension_days >= 1) AND (extension_days <= 15))),
    CONSTRAINT dsar_requests_kind_check CHECK ((kind = ANY (ARRAY['access'::text, 'correct'::text, 'erase'::text, 'withdraw'::text, 'restrict'::text]))),
    CONSTRAINT dsar_requests_one_extension CHECK ((((extension_days IS NULL) = (extended_at IS NULL)) AND ((extension_days IS NULL) = (due_before_extension IS NULL)) AND ((extension_days IS NULL) OR (btrim(COALESCE(extension_reason, ''::text)) <> ''::text)))),
    CONSTRAINT dsar_requests_rejected_with_reason CHECK (((status <> 'rejected'::text) OR (btrim(COALESCE(rejected_reason, ''::text)) <> ''::text))),
    CONSTRAINT dsar_requests_status_check CHECK ((status = ANY (ARRAY['received'::text, 'acknowledged'::text, 'in_progress'::text, 'waiting_for_hold'::text, 'in_force'::text, 'completed'::text, 'rejected'::text])))
);
ALTER TABLE ONLY public.dsar_requests FORCE ROW LEVEL SECURITY;
CREATE TABLE public.holds (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    call_id uuid,
    phone_hash bytea,
    phone_enc bytea,
    reason text NOT NULL,
    case_ref text,
    placed_by text NOT NULL,
    placed_at timestamp with time zone DEFAULT now() NOT NULL,
    released_by text,
    released_at timestamp with time zone,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL,
    CONSTRAINT holds_one_target CHECK ((((call_id IS NULL) <> (phone_hash IS NULL)) OR ((call_id IS NULL) AND (phone_hash IS NULL) AND (phone_enc IS NULL) AND (released_at IS NOT NULL)))),
    CONSTRAINT holds_reason_check CHECK ((btrim(reason) <> ''::text))
);
ALTER TABLE ONLY public.holds FORCE ROW LEVEL SECURITY;
CREATE TABLE public.jobs (
    id bigint NOT NULL,
    kind text NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    dedupe_key text,
    state text DEFAULT 'queued'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    max_attempts integer DEFAULT 12 NOT NULL,
    run_after timestamp with time zone DEFAULT now() NOT NULL,
    lease_token uuid,
    lease_expires_at timestamp with time zone,
    locked_by text,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL,
    CONSTRAINT jobs_lease_when_running CHECK (((state = 'running'::text) = (lease_token IS NOT NULL))),
    CONSTRAINT jobs_state_check CHECK ((state = ANY (ARRAY['queued'::text, 'running'::text, 'done'::text, 'dead'::text])))
);
ALTER TABLE ONLY public.jobs FORCE ROW LEVEL SECURITY;
CREATE SEQUENCE public.jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.jobs_id_seq OWNED BY public.jobs.id;
CREATE TABLE public.ledger_events (
    id bigint NOT NULL,
    call_id uuid NOT NULL,
    seq integer NOT NULL,
    type text NOT NULL,
    at timestamp with time zone NOT NULL,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    dedupe_key text,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL,
    CONSTRAINT ledger_events_hash_check CHECK ((length(hash) = 32)),
    CONSTRAINT ledger_events_prev_hash_check CHECK ((length(prev_hash) = 32)),
    CONSTRAINT ledger_events_seq_check CHECK ((seq >= 1))
);
ALTER TABLE ONLY public.ledger_events FORCE ROW LEVEL SECURITY;
CREATE SEQUENCE public.ledger_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.ledger_events_id_seq OWNED BY public.ledger_events.id;
CREATE TABLE public.ledger_seals (
    id bigint NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    max_event_id bigint NOT NULL,
    calls integer NOT NULL,
    heads_sha256 bytea,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL,
    format smallint DEFAULT 1 NOT NULL,
    root bytea,
    tree_size bigint,
    CONSTRAINT ledger_seals_format_check CHECK ((format = ANY (ARRAY[1, 2]))),
    CONSTRAINT ledger_seals_format_fields CHECK ((((format = 1) AND (heads_sha256 IS NOT NULL) AND (root IS NULL) AND (tree_size IS NULL)) OR ((format = 2) AND (heads_sha256 IS NULL) AND (root IS NOT NULL) AND (tree_size = calls)))),
    CONSTRAINT ledger_seals_hash_check CHECK ((length(hash) = 32)),
    CONSTRAINT ledger_seals_heads_sha256_check CHECK ((length(heads_sha256) = 32)),
    CONSTRAINT ledger_seals_prev_hash_check CHECK ((length(prev_hash) = 32)),
    CONSTRAINT ledger_seals_root_check CHECK ((length(root) = 32)),
    CONSTRAINT ledger_seals_tree_size_check CHECK ((tree_size >= 0))
);
ALTER TABLE ONLY public.ledger_seals FORCE ROW LEVEL SECURITY;
CREATE SEQUENCE public.ledger_seals_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.ledger_seals_id_seq OWNED BY public.ledger_seals.id;
CREATE TABLE public.pause_claims (
    call_id uuid NOT NULL,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL,
    action text NOT NULL,
    token uuid NOT NULL,
    claimed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT pause_claims_action_check CHECK ((action = ANY (ARRAY['pause'::text, 'resume'::text])))
);
ALTER TABLE ONLY public.pause_claims FORCE ROW LEVEL SECURITY;
CREATE TABLE public.receipt_keys (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL,
    public_key bytea NOT NULL,
    private_key_enc bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    retired_at timestamp with time zone,
    CONSTRAINT receipt_keys_public_key_check CHECK ((length(public_key) = 32))
);
ALTER TABLE ONLY public.receipt_keys FORCE ROW LEVEL SECURITY;
CREATE TABLE public.recording_callbacks (
    platform text NOT NULL,
    recording_sid text NOT NULL,
    status text NOT NULL,
    call_sid text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL
);
ALTER TABLE ONLY public.recording_callbacks FORCE ROW LEVEL SECURITY;
CREATE TABLE public.recording_keys (
    recording_id uuid NOT NULL,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL,
    format text NOT NULL,
    wrapped_key bytea NOT NULL,
    kek_id bytea NOT NULL,
    key_version integer DEFAULT 1 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    rewrapped_at timestamp with time zone,
    wrapper text DEFAULT 'derived'::text NOT NULL,
    kms_key_arn text,
    CONSTRAINT recording_keys_format_check CHECK ((format = 'tink-streaming-v1'::text)),
    CONSTRAINT recording_keys_kek_id_check CHECK ((length(kek_id) = 8)),
    CONSTRAINT recording_keys_key_version_check CHECK ((key_version >= 1)),
    CONSTRAINT recording_keys_kms_arn_check CHECK (((wrapper = 'kms'::text) = (kms_key_arn IS NOT NULL))),
    CONSTRAINT recording_keys_wrapper_check CHECK ((wrapper = ANY (ARRAY['derived'::text, 'kms'::text])))
);
ALTER TABLE ONLY public.recording_keys FORCE ROW LEVEL SECURITY;
CREATE TABLE public.recording_reconciliations (
    call_id uuid NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    claimed_until timestamp with time zone,
    last_attempt_at timestamp with time zone,
    settled_at timestamp with time zone,
    found integer DEFAULT 0 NOT NULL,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL
);
ALTER TABLE ONLY public.recording_reconciliations FORCE ROW LEVEL SECURITY;
CREATE TABLE public.recordings (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    call_id uuid NOT NULL,
    platform text NOT NULL,
    external_id text NOT NULL,
    state text DEFAULT 'pending'::text NOT NULL,
    object_key text,
    sha256 text,
    size_bytes bigint,
    content_type text,
    duration_s integer,
    retain_until timestamp with time zone,
    stored_at timestamp with time zone,
    platform_deleted_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    object_version text,
    purged_at timestamp with time zone,
    tenant_id text DEFAULT current_setting('callvault.tenant'::text, true) NOT NULL,
    object_store text DEFAULT 'shared'::text NOT NULL,
    retention_source text,
    upload_store text,
    CONSTRAINT recordings_object_store_check CHECK (((object_store = 'shared'::text) OR (object_store ~ '^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$'::text))),
    CONSTRAINT recordings_retention_source_check CHECK ((retention_source = ANY (ARRAY['tenant'::text, 'queue'::text, 'number'::text]))),
    CONSTRAINT recordings_state_check CHECK ((state = ANY (ARRAY['pending'::text, 'stored'::text, 'purged'::text, 'erased'::text, 'failed'::text]))),
    CONSTRAINT recordings_stored_complete CHECK (((state <> 'stored'::text) OR ((object_key IS NOT NULL) AND (sha256 IS NOT NULL) AND (size_bytes IS NOT NULL) AND (retain_until IS NOT NULL)))),
    CONSTRAINT recordings_upload_store_check CHECK (((upload_store = 'shared'::text) OR (upload_store ~ '^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$'::text)))
);
ALTER TABLE ONLY public.recordings FORCE ROW LEVEL SECURITY;
CREATE TABLE public.tenant_accounts (
    platform text NOT NULL,
    account_id text NOT NULL,
    tenant_id text NOT NULL,
    settings jsonb DEFAULT '{}'::jsonb NOT NULL,
    secrets jsonb DEFAULT '{}'::jsonb NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tenant_accounts_account_id_check CHECK ((account_id <> ''::text)),
    CONSTRAINT tenant_accounts_platform_check CHECK ((platform = ANY (ARRAY['twilio'::text, 'stringee'::text, 'pbx'::text]))),
    CONSTRAINT tenant_accounts_secrets_check CHECK ((jsonb_typeof(secrets) = 'object'::text)),
    CONSTRAINT tenant_accounts_settings_check CHECK ((jsonb_typeof(settings) = 'object'::text))
);
CREATE TABLE public.tenant_data_keys (
    tenant_id text NOT NULL,
    kms_key_id text NOT NULL,
    endpoint_url text,
    region text,
    credentials jsonb DEFAULT '{}'::jsonb NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tenant_data_keys_credentials_check CHECK ((jsonb_typeof(credentials) = 'object'::text)),
    CONSTRAINT tenant_data_keys_kms_key_id_check CHECK ((kms_key_id <> ''::text))
);
CREATE TABLE public.tenant_numbers (
    number text NOT NULL,
    tenant_id text NOT NULL,
    queue text,
    policy jsonb DEFAULT '{}'::jsonb NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tenant_numbers_number_check CHECK ((number ~ '^\+[1-9][0-9]{6,14}$'::text)),
    CONSTRAINT tenant_numbers_policy_check CHECK ((jsonb_typeof(policy) = 'object'::text))
);
CREATE TABLE public.tenant_queues (
    tenant_id text NOT NULL,
    name text NOT NULL,
    policy jsonb DEFAULT '{}'::jsonb NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tenant_queues_name_check CHECK ((name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'::text)),
    CONSTRAINT tenant_queues_policy_check CHECK ((jsonb_typeof(policy) = 'object'::text))
);
CREATE TABLE public.tenant_storage (
    tenant_id text NOT NULL,
    bucket text NOT NULL,
    endpoint_url text,
    region text,
    sse text DEFAULT 'AES256'::text NOT NULL,
    kms_key_id text,
    credentials jsonb DEFAULT '{}'::jsonb NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tenant_storage_credentials_check CHECK ((jsonb_typeof(credentials) = 'object'::text)),
    CONSTRAINT tenant_storage_sse_check CHECK ((sse = ANY (ARRAY['AES256'::text, 'aws:kms'::text])))
);
CREATE TABLE public.tenant_storage_former (
    tenant_id text NOT NULL,
    bucket text NOT NULL,
    endpoint_url text,
    region text,
    sse text NOT NULL,
    kms_key_id text,
    credentials jsonb NOT NULL,
    left_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tenant_storage_former_credentials_check CHECK ((jsonb_typeof(credentials) = 'object'::text)),
    CONSTRAINT tenant_storage_former_sse_check CHECK ((sse = ANY (ARRAY['AES256'::text, 'aws:kms'::text])))
);
CREATE TABLE public.tenants (
    id text NOT NULL,
    name text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    policy jsonb DEFAULT '{}'::jsonb NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tenants_id_check CHECK ((id ~ '^[a-z0-9][a-z0-9-]{1,39}$'::text)),
    CONSTRAINT tenants_policy_object CHECK ((jsonb_typeof(policy) = 'object'::text))
);
ALTER TABLE ONLY public.audit_log ALTER COLUMN id SET DEFAULT nextval('public.audit_log_id_seq'::regclass);
ALTER TABLE ONLY public.jobs ALTER COLUMN id SET DEFAULT nextval('public.jobs_id_seq'::regclass);
ALTER TABLE ONLY public.ledger_events ALTER COLUMN id SET DEFAULT nextval('public.ledger_events_id_seq'::regclass);
ALTER TABLE ONLY public.ledger_seals ALTER COLUMN id SET DEFAULT nextval('public.ledger_seals_id_seq'::regclass);
ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_token_sha256_key UNIQUE (token_sha256);
ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.calls
    ADD CONSTRAINT calls_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.calls
    ADD CONSTRAINT calls_platform_external_id_tenant_key UNIQUE (platform, external_id, tenant_id);
ALTER TABLE ONLY public.callvault_migrations
    ADD CONSTRAINT callvault_migrations_pkey PRIMARY KEY (version);
ALTER TABLE ONLY public.do_not_record
    ADD CONSTRAINT do_not_record_pkey PRIMARY KEY (tenant_id, phone_hash);
ALTER TABLE ONLY public.dsar_requests
    ADD CONSTRAINT dsar_requests_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.holds
    ADD CONSTRAINT holds_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_dedupe_key_tenant_key UNIQUE (dedupe_key, tenant_id);
ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.ledger_events
    ADD CONSTRAINT ledger_events_call_dedupe_key UNIQUE (call_id, dedupe_key);
ALTER TABLE ONLY public.ledger_events
    ADD CONSTRAINT ledger_events_call_seq_key UNIQUE (call_id, seq);
ALTER TABLE ONLY public.ledger_events
    ADD CONSTRAINT ledger_events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.ledger_seals
    ADD CONSTRAINT ledger_seals_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.pause_claims
    ADD CONSTRAINT pause_claims_pkey PRIMARY KEY (call_id);
ALTER TABLE ONLY public.receipt_keys
    ADD CONSTRAINT receipt_keys_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.recording_callbacks
    ADD CONSTRAINT recording_callbacks_pkey PRIMARY KEY (platform, recording_sid, status, tenant_id);
ALTER TABLE ONLY public.recording_keys
    ADD CONSTRAINT recording_keys_pkey PRIMARY KEY (recording_id);
ALTER TABLE ONLY public.recording_reconciliations
    ADD CONSTRAINT recording_reconciliations_pkey PRIMARY KEY (call_id);
ALTER TABLE ONLY public.recordings
    ADD CONSTRAINT recordings_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.recordings
    ADD CONSTRAINT recordings_platform_external_id_tenant_key UNIQUE (platform, external_id, tenant_id);
ALTER TABLE ONLY public.tenant_accounts
    ADD CONSTRAINT tenant_accounts_pkey PRIMARY KEY (platform, account_id, tenant_id);
ALTER TABLE ONLY public.tenant_data_keys
    ADD CONSTRAINT tenant_data_keys_pkey PRIMARY KEY (tenant_id);
ALTER TABLE ONLY public.tenant_numbers
    ADD CONSTRAINT tenant_numbers_pkey PRIMARY KEY (number);
ALTER TABLE ONLY public.tenant_queues
    ADD CONSTRAINT tenant_queues_pkey PRIMARY KEY (tenant_id, name);
ALTER TABLE ONLY public.tenant_storage_former
    ADD CONSTRAINT tenant_storage_former_pkey PRIMARY KEY (tenant_id, bucket);
ALTER TABLE ONLY public.tenant_storage
    ADD CONSTRAINT tenant_storage_pkey PRIMARY KEY (tenant_id);
ALTER TABLE ONLY public.tenants
    ADD CONSTRAINT tenants_pkey PRIMARY KEY (id);
CREATE UNIQUE INDEX api_tokens_name_key ON public.api_tokens USING btree (COALESCE(tenant_id, '*'::text), name);
CREATE INDEX audit_log_at_idx ON public.audit_log USING btree (at);
CREATE INDEX audit_log_tenant_at_idx ON public.audit_log USING btree (tenant_id, at);
CREATE INDEX calls_caller_hash_idx ON public.calls USING btree (caller_hash);
CREATE INDEX calls_erased_by_idx ON public.calls USING btree (erased_by) WHERE (erased_by IS NOT NULL);
CREATE INDEX calls_tenant_outcome_started_idx ON public.calls USING btree (tenant_id, outcome, started_at, id);
CREATE INDEX calls_tenant_started_id_idx ON public.calls USING btree (tenant_id, started_at, id);
CREATE INDEX calls_tenant_started_outcome_idx ON public.calls USING btree (tenant_id, started_at) INCLUDE (outcome, queue);
CREATE INDEX dsar_requests_bundle_expiry_idx ON public.dsar_requests USING btree (bundle_expires_at) WHERE (bundle_key IS NOT NULL);
CREATE INDEX dsar_requests_open_idx ON public.dsar_requests USING btree (due_at) WHERE (status <> ALL (ARRAY['completed'::text, 'rejected'::text, 'in_force'::text]));
CREATE INDEX dsar_requests_phone_hash_idx ON public.dsar_requests USING btree (phone_hash) WHERE (phone_hash IS NOT NULL);
CREATE INDEX dsar_requests_restricted_idx ON public.dsar_requests USING btree (phone_hash) WHERE ((kind = 'restrict'::text) AND (status = 'in_force'::text));
CREATE INDEX dsar_requests_subject_digest_idx ON public.dsar_requests USING btree (subject_digest) WHERE (subject_digest IS NOT NULL);
CREATE INDEX dsar_requests_tenant_idx ON public.dsar_requests USING btree (tenant_id);
CREATE INDEX holds_active_call_idx ON public.holds USING btree (call_id) WHERE (released_at IS NULL);
CREATE INDEX holds_active_phone_idx ON public.holds USING btree (phone_hash) WHERE (released_at IS NULL);
CREATE INDEX holds_tenant_idx ON public.holds USING btree (tenant_id);
CREATE INDEX jobs_queued_idx ON public.jobs USING btree (run_after) WHERE (state = 'queued'::text);
CREATE INDEX jobs_running_idx ON public.jobs USING btree (lease_expires_at) WHERE (state = 'running'::text);
CREATE UNIQUE INDEX ledger_seals_tenant_chain ON public.ledger_seals USING btree (tenant_id, prev_hash);
CREATE INDEX ledger_seals_tenant_id_idx ON public.ledger_seals USING btree (tenant_id, id);
CREATE UNIQUE INDEX receipt_keys_one_current ON public.receipt_keys USING btree (tenant_id) WHERE (retired_at IS NULL);
CREATE INDEX receipt_keys_tenant_idx ON public.receipt_keys USING btree (tenant_id, created_at);
CREATE INDEX recording_callbacks_call_idx ON public.recording_callbacks USING btree (platform, call_sid);
CREATE INDEX recording_keys_tenant_kek_idx ON public.recording_keys USING btree (tenant_id, kek_id);
CREATE INDEX recording_reconciliations_open_idx ON public.recording_reconciliations USING btree (last_attempt_at) WHERE (settled_at IS NULL);
CREATE INDEX recordings_call_id_idx ON public.recordings USING btree (call_id);
CREATE INDEX recordings_left_uploads ON public.recordings USING btree (tenant_id, id) WHERE ((upload_store IS NOT NULL) AND (upload_store IS DISTINCT FROM object_store) AND (state <> 'pending'::text));
CREATE INDEX recordings_purge_claim_idx ON public.recordings USING btree (tenant_id, retain_until, id) WHERE (state = 'stored'::text);
CREATE INDEX recordings_retain_until_idx ON public.recordings USING btree (retain_until) WHERE (state = 'stored'::text);
CREATE INDEX recordings_tenant_purged_at_idx ON public.recordings USING btree (tenant_id, purged_at) WHERE (purged_at IS NOT NULL);
CREATE INDEX recordings_tenant_stored_at_idx ON public.recordings USING btree (tenant_id, stored_at) WHERE (stored_at IS NOT NULL);
CREATE INDEX tenant_accounts_tenant ON public.tenant_accounts USING btree (tenant_id);
CREATE INDEX tenant_numbers_tenant ON public.tenant_numbers USING btree (tenant_id);
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON public.audit_log FOR EACH STATEMENT EXECUTE FUNCTION public.append_only_refuse_change();
CREATE TRIGGER audit_log_no_update_delete BEFORE DELETE OR UPDATE ON public.audit_log FOR EACH ROW EXECUTE FUNCTION public.append_only_refuse_change();
CREATE TRIGGER holds_tenant BEFORE INSERT ON public.holds FOR EACH ROW EXECUTE FUNCTION public.tenant_of_call();
CREATE TRIGGER ledger_events_link_tenant BEFORE INSERT ON public.ledger_events FOR EACH ROW EXECUTE FUNCTION public.ledger_events_before_insert();
CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON public.ledger_events FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_events_refuse_change();
CREATE TRIGGER ledger_events_no_update_delete BEFORE DELETE OR UPDATE ON public.ledger_events FOR EACH ROW EXECUTE FUNCTION public.ledger_events_refuse_change();
CREATE TRIGGER ledger_seals_no_truncate BEFORE TRUNCATE ON public.ledger_seals FOR EACH STATEMENT EXECUTE FUNCTION public.append_only_refuse_change();
CREATE TRIGGER ledger_seals_no_update_delete BEFORE DELETE OR UPDATE ON public.ledger_seals FOR EACH ROW EXECUTE FUNCTION public.append_only_refuse_change();
CREATE TRIGGER receipt_keys_only_retire BEFORE DELETE OR UPDATE ON public.receipt_keys FOR EACH ROW EXECUTE FUNCTION public.receipt_keys_only_retire();
CREATE TRIGGER recording_keys_tenant BEFORE INSERT ON public.recording_keys FOR EACH ROW EXECUTE FUNCTION public.tenant_of_recording();
CREATE TRIGGER recording_reconciliations_tenant BEFORE INSERT ON public.recording_reconciliations FOR EACH ROW EXECUTE FUNCTION public.tenant_of_call();
CREATE TRIGGER recordings_tenant BEFORE INSERT ON public.recordings FOR EACH ROW EXECUTE FUNCTION public.tenant_of_call();
CREATE TRIGGER tenant_storage_keep_former AFTER DELETE OR UPDATE ON public.tenant_storage FOR EACH ROW EXECUTE FUNCTION public.tenant_storage_keep_former();
ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.calls
    ADD CONSTRAINT calls_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.do_not_record
    ADD CONSTRAINT do_not_record_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.dsar_requests
    ADD CONSTRAINT dsar_requests_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.holds
    ADD CONSTRAINT holds_call_id_fkey FOREIGN KEY (call_id) REFERENCES public.calls(id);
ALTER TABLE ONLY public.holds
    ADD CONSTRAINT holds_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.ledger_events
    ADD CONSTRAINT ledger_events_call_id_fkey FOREIGN KEY (call_id) REFERENCES public.calls(id);
ALTER TABLE ONLY public.ledger_events
    ADD CONSTRAINT ledger_events_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.ledger_seals
    ADD CONSTRAINT ledger_seals_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.pause_claims
    ADD CONSTRAINT pause_claims_call_id_fkey FOREIGN KEY (call_id) REFERENCES public.calls(id) ON DELETE CASCADE;
ALTER TABLE ONLY public.pause_claims
    ADD CONSTRAINT pause_claims_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.receipt_keys
    ADD CONSTRAINT receipt_keys_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.recording_callbacks
    ADD CONSTRAINT recording_callbacks_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.recording_keys
    ADD CONSTRAINT recording_keys_recording_id_fkey FOREIGN KEY (recording_id) REFERENCES public.recordings(id) ON DELETE CASCADE;
ALTER TABLE ONLY public.recording_keys
    ADD CONSTRAINT recording_keys_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.recording_reconciliations
    ADD CONSTRAINT recording_reconciliations_call_id_fkey FOREIGN KEY (call_id) REFERENCES public.calls(id);
ALTER TABLE ONLY public.recording_reconciliations
    ADD CONSTRAINT recording_reconciliations_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.recordings
    ADD CONSTRAINT recordings_call_id_fkey FOREIGN KEY (call_id) REFERENCES public.calls(id);
ALTER TABLE ONLY public.recordings
    ADD CONSTRAINT recordings_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id);
ALTER TABLE ONLY public.tenant_accounts
    ADD CONSTRAINT tenant_accounts_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;
ALTER TABLE ONLY public.tenant_data_keys
    ADD CONSTRAINT tenant_data_keys_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;
ALTER TABLE ONLY public.tenant_numbers
    ADD CONSTRAINT tenant_numbers_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;
ALTER TABLE ONLY public.tenant_numbers
    ADD CONSTRAINT tenant_numbers_tenant_id_queue_fkey FOREIGN KEY (tenant_id, queue) REFERENCES public.tenant_queues(tenant_id, name);
ALTER TABLE ONLY public.tenant_queues
    ADD CONSTRAINT tenant_queues_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;
ALTER TABLE ONLY public.tenant_storage_former
    ADD CONSTRAINT tenant_storage_former_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;
ALTER TABLE ONLY public.tenant_storage
    ADD CONSTRAINT tenant_storage_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;
ALTER TABLE public.api_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.calls ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.do_not_record ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.dsar_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.holds ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ledger_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ledger_seals ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.pause_claims ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.receipt_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.recording_callbacks ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.recording_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.recording_reconciliations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.recordings ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.api_tokens USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.audit_log USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.calls USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.do_not_record USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.dsar_requests USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.holds USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.jobs USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.ledger_events USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.ledger_seals USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.pause_claims USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.receipt_keys USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.recording_callbacks USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.recording_keys USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.recording_reconciliations USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
CREATE POLICY tenant_isolation ON public.recordings USING (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text))) WITH CHECK (((tenant_id = current_setting('callvault.tenant'::text, true)) OR (current_setting('callvault.tenant'::text, true) = '*'::text)));
