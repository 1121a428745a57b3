"""Tenants (a BPO's clients) as configuration: the spec, its rows, `tenant apply`."""
