CREATE FUNCTION public.ledger_events_check_link() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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
CREATE FUNCTION public.ledger_events_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'ledger_events is append-only: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TABLE public.calls (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    platform text NOT NULL,
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
    CONSTRAINT calls_outcome_at_set CHECK (((outcome = 'in_progress'::text) = (outcome_at IS NULL))),
    CONSTRAINT calls_outcome_check CHECK ((outcome = ANY (ARRAY['in_progress'::text, 'consented'::text, 'refused'::text, 'hung_up_during_notice'::text, 'no_input'::text, 'not_asked'::text])))
);
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
    phone_enc bytea
);
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
    CONSTRAINT jobs_lease_when_running CHECK (((state = 'running'::text) = (lease_token IS NOT NULL))),
    CONSTRAINT jobs_state_check CHECK ((state = ANY (ARRAY['queued'::text, 'running'::text, 'done'::text, 'dead'::text])))
);
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
    CONSTRAINT ledger_events_hash_check CHECK ((length(hash) = 32)),
    CONSTRAINT ledger_events_prev_hash_check CHECK ((length(prev_hash) = 32)),
    CONSTRAINT ledger_events_seq_check CHECK ((seq >= 1))
);
CREATE SEQUENCE public.ledger_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.ledger_events_id_seq OWNED BY public.ledger_events.id;
CREATE TABLE public.recording_callbacks (
    platform text NOT NULL,
    recording_sid text NOT NULL,
    status text NOT NULL,
    call_sid text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL
);
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
    CONSTRAINT recordings_state_check CHECK ((state = ANY (ARRAY['pending'::text, 'stored'::text, 'purged'::text, 'erased'::text, 'failed'::text]))),
    CONSTRAINT recordings_stored_complete CHECK (((state <> 'stored'::text) OR ((object_key IS NOT NULL) AND (sha256 IS NOT NULL) AND (size_bytes IS NOT NULL) AND (retain_until IS NOT NULL))))
);
ALTER TABLE ONLY public.jobs ALTER COLUMN id SET DEFAULT nextval('public.jobs_id_seq'::regclass);
ALTER TABLE ONLY public.ledger_events ALTER COLUMN id SET DEFAULT nextval('public.ledger_events_id_seq'::regclass);
ALTER TABLE ONLY public.calls
    ADD CONSTRAINT calls_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.calls
    ADD CONSTRAINT calls_platform_external_id_key UNIQUE (platform, external_id);
ALTER TABLE ONLY public.callvault_migrations
    ADD CONSTRAINT callvault_migrations_pkey PRIMARY KEY (version);
ALTER TABLE ONLY public.do_not_record
    ADD CONSTRAINT do_not_record_pkey PRIMARY KEY (phone_hash);
ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_dedupe_key_key UNIQUE (dedupe_key);
ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.ledger_events
    ADD CONSTRAINT ledger_events_call_dedupe_key UNIQUE (call_id, dedupe_key);
ALTER TABLE ONLY public.ledger_events
    ADD CONSTRAINT ledger_events_call_seq_key UNIQUE (call_id, seq);
ALTER TABLE ONLY public.ledger_events
    ADD CONSTRAINT ledger_events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.recording_callbacks
    ADD CONSTRAINT recording_callbacks_pkey PRIMARY KEY (platform, recording_sid, status);
ALTER TABLE ONLY public.recordings
    ADD CONSTRAINT recordings_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.recordings
    ADD CONSTRAINT recordings_platform_external_id_key UNIQUE (platform, external_id);
CREATE INDEX calls_caller_hash_idx ON public.calls USING btree (caller_hash);
CREATE INDEX calls_started_at_idx ON public.calls USING btree (started_at);
CREATE INDEX jobs_queued_idx ON public.jobs USING btree (run_after) WHERE (state = 'queued'::text);
CREATE INDEX jobs_running_idx ON public.jobs USING btree (lease_expires_at) WHERE (state = 'running'::text);
CREATE INDEX recordings_call_id_idx ON public.recordings USING btree (call_id);
CREATE INDEX recordings_retain_until_idx ON public.recordings USING btree (retain_until) WHERE (state = 'stored'::text);
CREATE TRIGGER ledger_events_link BEFORE INSERT ON public.ledger_events FOR EACH ROW EXECUTE FUNCTION public.ledger_events_check_link();
CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON public.ledger_events FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_events_refuse_change();
CREATE TRIGGER ledger_events_no_update_delete BEFORE DELETE OR UPDATE ON public.ledger_events FOR EACH ROW EXECUTE FUNCTION public.ledger_events_refuse_change();
ALTER TABLE ONLY public.ledger_events
    ADD CONSTRAINT ledger_events_call_id_fkey FOREIGN KEY (call_id) REFERENCES public.calls(id);
ALTER TABLE ONLY public.recordings
    ADD CONSTRAINT recordings_call_id_fkey FOREIGN KEY (call_id) REFERENCES public.calls(id);
