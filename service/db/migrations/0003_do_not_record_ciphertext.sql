-- Keep the do-not-record number encrypted beside its lookup hash, so that a secret-key rotation
-- can recompute the hash (a hash alone cannot be re-keyed).
ALTER TABLE do_not_record ADD COLUMN phone_enc bytea;
