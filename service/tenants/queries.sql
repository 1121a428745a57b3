-- name: lock
-- one apply at a time, so that two plans never interleave
SELECT pg_advisory_xact_lock(hashtext('callvault.tenant_apply'));

-- name: create_tenant
INSERT INTO tenants (id, name) VALUES ($1, $2)
ON CONFLICT (id) DO NOTHING
RETURNING id, name, created_at;

-- name: list_tenants
SELECT t.id, t.name, t.created_at, t.updated_at,
       (SELECT count(*) FROM tenant_queues q WHERE q.tenant_id = t.id) AS queues,
       (SELECT count(*) FROM tenant_numbers n WHERE n.tenant_id = t.id) AS numbers,
       (SELECT count(*) FROM tenant_accounts a WHERE a.tenant_id = t.id) AS accounts,
       EXISTS (SELECT 1 FROM tenant_storage s WHERE s.tenant_id = t.id) AS own_storage
FROM tenants t ORDER BY t.id;

-- name: tenants
SELECT id, name, policy, created_at, updated_at FROM tenants WHERE id = ANY($1::text[]);

-- name: queues
SELECT tenant_id, name, policy FROM tenant_queues WHERE tenant_id = ANY($1::text[]);

-- name: numbers
SELECT tenant_id, number, queue, policy FROM tenant_numbers WHERE tenant_id = ANY($1::text[]);

-- name: accounts
SELECT tenant_id, platform, account_id, settings, secrets
FROM tenant_accounts WHERE tenant_id = ANY($1::text[]);

-- name: storage
SELECT tenant_id, bucket, endpoint_url, region, sse, kms_key_id, credentials
FROM tenant_storage WHERE tenant_id = ANY($1::text[]);

-- name: data_keys
SELECT tenant_id, kms_key_id, endpoint_url, region, credentials
FROM tenant_data_keys WHERE tenant_id = ANY($1::text[]);

-- name: number_owners
SELECT number, tenant_id FROM tenant_numbers WHERE number = ANY($1::text[]);

-- name: upsert_tenant
INSERT INTO tenants (id, name, policy) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, policy = EXCLUDED.policy, updated_at = now()
WHERE (tenants.name, tenants.policy) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.policy);

-- name: upsert_queue
INSERT INTO tenant_queues (tenant_id, name, policy) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, name) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()
WHERE tenant_queues.policy IS DISTINCT FROM EXCLUDED.policy;

-- name: delete_queues_except
DELETE FROM tenant_queues WHERE tenant_id = $1 AND name <> ALL($2::text[]);

-- name: upsert_number
-- a number moved between two tenants of the same file changes owner here
INSERT INTO tenant_numbers (number, tenant_id, queue, policy) VALUES ($1, $2, $3, $4)
ON CONFLICT (number) DO UPDATE
SET tenant_id = EXCLUDED.tenant_id, queue = EXCLUDED.queue, policy = EXCLUDED.policy,
    updated_at = now()
WHERE (tenant_numbers.tenant_id, tenant_numbers.queue, tenant_numbers.policy)
      IS DISTINCT FROM (EXCLUDED.tenant_id, EXCLUDED.queue, EXCLUDED.policy);

-- name: delete_numbers_except
DELETE FROM tenant_numbers WHERE tenant_id = $1 AND number <> ALL($2::text[]);

-- name: upsert_account
INSERT INTO tenant_accounts (platform, account_id, tenant_id, settings, secrets)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (platform, account_id, tenant_id) DO UPDATE
SET settings = EXCLUDED.settings, secrets = EXCLUDED.secrets, updated_at = now()
WHERE (tenant_accounts.settings, tenant_accounts.secrets)
      IS DISTINCT FROM (EXCLUDED.settings, EXCLUDED.secrets);

-- name: delete_account
DELETE FROM tenant_accounts WHERE platform = $1 AND account_id = $2 AND tenant_id = $3;

-- name: upsert_storage
INSERT INTO tenant_storage (tenant_id, bucket, endpoint_url, region, sse, kms_key_id, credentials)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tenant_id) DO UPDATE
SET bucket = EXCLUDED.bucket, endpoint_url = EXCLUDED.endpoint_url, region = EXCLUDED.region,
    sse = EXCLUDED.sse, kms_key_id = EXCLUDED.kms_key_id, credentials = EXCLUDED.credentials,
    updated_at = now();

-- name: delete_storage
DELETE FROM tenant_storage WHERE tenant_id = $1;

-- name: upsert_data_keys
INSERT INTO tenant_data_keys (tenant_id, kms_key_id, endpoint_url, region, credentials)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id) DO UPDATE
SET kms_key_id = EXCLUDED.kms_key_id, endpoint_url = EXCLUDED.endpoint_url,
    region = EXCLUDED.region, credentials = EXCLUDED.credentials, updated_at = now();

-- name: delete_data_keys
DELETE FROM tenant_data_keys WHERE tenant_id = $1;

-- name: announce
-- Every replica's tenant directory (service/tenants/policies.py) listens on this channel and
-- re-reads the tables. Sent inside the writer's transaction: delivered at commit, not at all on
-- rollback, and PostgreSQL folds identical notifications of one transaction into one.
SELECT pg_notify('callvault_tenants', '');

-- name: directory_policies
SELECT id, policy FROM tenants;

-- name: directory_queues
SELECT tenant_id, name, policy FROM tenant_queues;

-- name: directory_numbers
SELECT number, tenant_id, queue, policy FROM tenant_numbers;

-- name: directory_accounts
SELECT platform, account_id, tenant_id, settings, secrets FROM tenant_accounts;
