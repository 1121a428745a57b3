CREATE TABLE tenants (
    id text PRIMARY KEY CONSTRAINT tenants_id_check CHECK (id ~ '^[a-z0-9][a-z0-9-]{1,39}$'),
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenants (id, name) VALUES ('default', 'Default');

-- Tenant configuration, written only by `tenant apply` / PUT /api/tenants/{id} (service/tenants).
-- These are the platform operator's tables, not tenant-owned call data: no row-level security.
-- Policies are the validated keys of the tenant file, durations in whole seconds. The tenant
-- `default` keeps an empty policy: its policy comes from the environment and CALLVAULT_CONFIG.
ALTER TABLE tenants
    ADD COLUMN policy jsonb NOT NULL DEFAULT '{}'::jsonb
        CONSTRAINT tenants_policy_object CHECK (jsonb_typeof(policy) = 'object'),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE TABLE tenant_queues (
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    policy jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(policy) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

-- A called number belongs to exactly one tenant (the primary key), and names one of that
-- tenant's queues or none.
CREATE TABLE tenant_numbers (
    number text PRIMARY KEY CHECK (number ~ '^\+[1-9][0-9]{6,14}$'),
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    queue text,
    policy jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(policy) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, queue) REFERENCES tenant_queues (tenant_id, name)
);
CREATE INDEX tenant_numbers_tenant ON tenant_numbers (tenant_id);

-- Platform accounts: a Twilio AccountSid, a Stringee project id, a PBX's name. One account may
-- be registered to several tenants (then the called number decides, issue 13 item 3).
-- `secrets` holds references only: {"auth_token_env": "NAME"} or {"..._file": "/path"}.
CREATE TABLE tenant_accounts (
    platform text NOT NULL CHECK (platform IN ('twilio', 'stringee', 'pbx')),
    account_id text NOT NULL CHECK (account_id <> ''),
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    settings jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    secrets jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(secrets) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, account_id, tenant_id)
);
CREATE INDEX tenant_accounts_tenant ON tenant_accounts (tenant_id);

-- A tenant's own bucket; without a row the tenant uses the shared bucket under tenants/{id}/.
-- Credentials are references (environment variable names or files), never values.
CREATE TABLE tenant_storage (
    tenant_id text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    bucket text NOT NULL,
    endpoint_url text,
    region text,
    sse text NOT NULL DEFAULT 'AES256' CHECK (sse IN ('AES256', 'aws:kms')),
    kms_key_id text,
    credentials jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(credentials) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The platform's role: manages tenants (and, later, tokens and health); never call data.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('telephony', 'qa_trainer', 'compliance', 'admin', 'operator'));
