-- name: active_holds
SELECT count(*) FROM holds WHERE tenant_id = $1 AND released_at IS NULL;

-- name: tenant_created
SELECT created_at FROM tenants WHERE id = $1;

-- name: calls
SELECT id FROM calls WHERE tenant_id = $1 ORDER BY started_at, id;

-- name: unerased_calls
-- Calls an erasure pass has not reached: started by a request already past authentication
-- when the tenant was cut off.
SELECT id FROM calls WHERE tenant_id = $1 AND erased_at IS NULL ORDER BY started_at, id;

-- name: recordings_left
-- Every recording row still there before the rows go, locked: any object one may name (stored,
-- or an upload that never committed) is deleted first, so no object outlives its row.
SELECT id, state, object_key, object_store, upload_store FROM recordings WHERE tenant_id = $1
ORDER BY id
FOR UPDATE;

-- name: bundles
-- Every access bundle the tenant's requests may have left: the one recorded, and the keys of
-- uploads that never reached their run's commit (bundle_uploads, each with the store it went to).
SELECT id, kind, bundle_key, bundle_store, bundle_uploads FROM dsar_requests WHERE tenant_id = $1
FOR UPDATE;

-- name: delete_call_data
-- What is left of the tenant's call data once its calls are erased: the recordings' rows (their
-- objects are gone), callbacks, reconciliations, requests (their bundles are gone), holds (all
-- released: offboarding refuses otherwise), the do-not-record list (encrypted numbers) and the
-- job queue. Calls stay, stripped of the number, because the ledger's events hang from them.
WITH recordings AS (DELETE FROM recordings WHERE tenant_id = $1 RETURNING 1),
callbacks AS (DELETE FROM recording_callbacks WHERE tenant_id = $1 RETURNING 1),
reconciliations AS (DELETE FROM recording_reconciliations WHERE tenant_id = $1 RETURNING 1),
requests AS (DELETE FROM dsar_requests WHERE tenant_id = $1 RETURNING 1),
holds AS (DELETE FROM holds WHERE tenant_id = $1 RETURNING 1),
do_not_record AS (DELETE FROM do_not_record WHERE tenant_id = $1 RETURNING 1),
jobs AS (DELETE FROM jobs WHERE tenant_id = $1 RETURNING 1)
SELECT (SELECT count(*) FROM recordings) AS recordings,
       (SELECT count(*) FROM callbacks) AS callbacks,
       (SELECT count(*) FROM reconciliations) AS reconciliations,
       (SELECT count(*) FROM requests) AS requests,
       (SELECT count(*) FROM holds) AS holds,
       (SELECT count(*) FROM do_not_record) AS do_not_record,
       (SELECT count(*) FROM jobs) AS jobs;

-- name: active_tokens
SELECT id FROM api_tokens WHERE tenant_id = $1 AND revoked_at IS NULL;

-- name: delete_accounts
-- the tenant's platform accounts and numbers go, so no webhook lands in it any more
WITH a AS (DELETE FROM tenant_accounts WHERE tenant_id = $1 RETURNING 1),
n AS (DELETE FROM tenant_numbers WHERE tenant_id = $1 RETURNING 1)
SELECT (SELECT count(*) FROM a) AS accounts, (SELECT count(*) FROM n) AS numbers;
