"""Stringee (Vietnam's CPaaS) behind the platform port: ``adapter`` (what the application
mounts), ``routes`` (the four requests), ``accounts`` (tenant and project), ``signature``,
``events``, ``scco``, ``rest_auth``, ``media`` + ``sources`` (the recording download).
This folder's README.md says where each Stringee fact comes from."""
