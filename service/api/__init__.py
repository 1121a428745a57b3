"""The JSON API under ``/api``: tokens, holds, data-subject requests, audit trail, ledger."""
