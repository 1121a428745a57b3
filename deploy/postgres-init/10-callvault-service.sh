#!/bin/sh
# Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d).
# POSTGRES_USER is a superuser, which row-level security does not bind, so `serve` and
# `callvault worker` refuse it: they log in as callvault_service (the role embedded mode serves
# as, service/db/roles.py), which `migrate` (as the superuser) never owns anything for. Default
# privileges give it, on every table, sequence and function `migrate` creates later, what
# roles.ensure_service_role grants in embedded mode: rows only (no TRUNCATE, no DDL).
# On a data directory made before this script existed, run the same SQL once by hand.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v pw="$CALLVAULT_SERVICE_DB_PASSWORD" <<'SQL'
CREATE ROLE callvault_service LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB PASSWORD :'pw';
GRANT CONNECT ON DATABASE callvault TO callvault_service;
GRANT USAGE ON SCHEMA public TO callvault_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO callvault_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO callvault_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO callvault_service;
SQL
