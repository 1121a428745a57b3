-- name: projects
-- Stringee projects and the tenants they are registered to (operator tables: no RLS).
SELECT account_id, tenant_id, settings, secrets FROM tenant_accounts WHERE platform = 'stringee';

-- name: numbers
SELECT number, tenant_id FROM tenant_numbers;

-- name: continue_scco
-- Each tenant's continue_scco (number NULL), and each number's own or its queue's.
SELECT t.id AS tenant_id, NULL::text AS number, t.policy -> 'continue_scco' AS continue_scco
FROM tenants t
UNION ALL
SELECT n.tenant_id, n.number,
       COALESCE(n.policy -> 'continue_scco', q.policy -> 'continue_scco', t.policy -> 'continue_scco')
FROM tenant_numbers n
JOIN tenants t ON t.id = n.tenant_id
LEFT JOIN tenant_queues q ON q.tenant_id = n.tenant_id AND q.name = n.queue;

-- name: called_number
-- The contact centre's number of a call (kept plain), to find its continue_scco again.
SELECT called FROM calls WHERE platform = 'stringee' AND external_id = $1;

-- name: call_known
SELECT EXISTS (SELECT 1 FROM calls WHERE platform = 'stringee' AND external_id = $1);
