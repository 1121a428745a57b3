-- Access bundles under a key of their own run (retention/dsar.py): two runners of one request
-- (two replicas, the CLI beside the job, a rerun after a lost lease) wrote the same fixed key,
-- so the later upload replaced the object a completion had already named, or was named by a
-- completion it did not belong to. A run now names its own key here, committed before it
-- uploads, so an upload that has not reached its commit can still be found and deleted: by the
-- run that completes the request, by an erasure of the number, by the tenant's offboarding.
-- A run removes its key at its commit (naming it as the request's bundle, or deleting it).
ALTER TABLE dsar_requests ADD COLUMN bundle_uploads text[] NOT NULL DEFAULT '{}';
