-- A recording's upload names the store it goes to before it starts (service/intake/job.py,
-- store_received). The row named its store only at the commit (object_store): an upload that
-- never committed (a crash, a lost lease, a store that refused the verification) was looked for
-- in the tenant's store of the moment, by the retry, an erasure, offboarding and intake's own
-- cleanup; after a tenant's storage moved to another bucket, such an upload stayed in the old
-- one, a caller's voice no row named. NULL: no upload announced (every row before this, and
-- those of replicas not yet upgraded): the tenant's store of the moment, as before.
ALTER TABLE recordings ADD COLUMN upload_store text
    CONSTRAINT recordings_upload_store_check CHECK (
        upload_store = 'shared' OR upload_store ~ '^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$'
    );
