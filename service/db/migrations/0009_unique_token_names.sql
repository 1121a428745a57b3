-- Token names are unique (per tenant once tenants exist; today there is one): the audit trail
-- names a token's actions `token:<name>`, so two tokens sharing a name would make them
-- ambiguous. Revoked tokens keep their names for the same reason.
-- Duplicates made before this migration: the oldest keeps the name, later ones get their id
-- appended (the audit trail's token_created entries record which id had which name).
UPDATE api_tokens AS t
SET name = t.name || ' (' || t.id::text || ')'
WHERE EXISTS (
    SELECT 1 FROM api_tokens AS o
    WHERE o.name = t.name AND (o.created_at, o.id) < (t.created_at, t.id)
);

CREATE UNIQUE INDEX api_tokens_name_key ON api_tokens (name);
