-- A PBX's call id is kept as the PBX sent it (an Asterisk UNIQUEID, a FreeSWITCH uuid), as a
-- Twilio CallSid or a Stringee callId is. Before 0018 made platform ids unique per tenant, the
-- PBX API kept it as "{tenant}/{id}" so that two tenants' PBXes could use the same ids; the
-- prefix then showed in the API's listings, receipts and access exports, and a pause or a QA
-- search by the PBX's own id had to know it. Calls and recordings kept that way lose the
-- prefix here.
--
-- Idempotent: a PBX's id cannot contain "/" (the API refuses one), so only rows in the old
-- form start with their tenant and a "/", and a rewritten row never does. A row whose bare id
-- is taken already in its tenant (written by a newer replica during a rolling upgrade) is left
-- as it is rather than failing the migration. Every tenant's rows, whatever role runs it:
-- row-level security binds a table's owner too, so the migration sees all tenants itself.

SELECT set_config('callvault.tenant', '*', true);

UPDATE calls AS c
SET external_id = substr(c.external_id, length(c.tenant_id) + 2)
WHERE c.platform = 'pbx'
  AND starts_with(c.external_id, c.tenant_id || '/')
  AND NOT EXISTS (
      SELECT 1 FROM calls AS o
      WHERE o.platform = 'pbx' AND o.tenant_id = c.tenant_id
        AND o.external_id = substr(c.external_id, length(c.tenant_id) + 2));

-- A PBX's recording is named by its call's id: renamed with its call, and only then (so it
-- never takes the name of another call's recording).
UPDATE recordings AS r
SET external_id = c.external_id
FROM calls AS c
WHERE c.id = r.call_id
  AND r.platform = 'pbx'
  AND starts_with(r.external_id, r.tenant_id || '/')
  AND c.external_id = substr(r.external_id, length(r.tenant_id) + 2);
