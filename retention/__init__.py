"""Retention policies, purge, legal holds and data-subject requests (built in later issues)."""
