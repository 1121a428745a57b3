"""Which Stringee API hosts callvault talks to, and which URLs it lets audio come from.

Stringee serves its REST API from ``https://api.stringee.com`` and from regional hosts such as
``https://asia-3.api.stringee.com`` (seen in the wild; the docs name ``api.stringee.com`` and
``icc-api.stringee.com``). A recording is asked for at each configured host in order, so an
operator whose project lives in a region lists that region first. Plain http is accepted only
for a loopback address (the test suite's fake Stringee); credentials never leave these hosts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from yarl import URL

DEFAULT_API_HOSTS = ("https://api.stringee.com",)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def safe_url(url: URL) -> bool:
    """https anywhere, or http to a loopback address; never user:password in the URL."""
    if url.user is not None or url.password is not None or not url.host:
        return False
    return url.scheme == "https" or (url.scheme == "http" and is_loopback(url.host))


def parse_hosts(value: str | Iterable[str]) -> tuple[str, ...]:
    """Comma-separated (or listed) API base URLs, as origins with no path, query or trailing
    slash. :class:`ValueError` names the first bad one."""
    items = value.split(",") if isinstance(value, str) else list(value)
    hosts: list[str] = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        url = URL(text)
        if not url.is_absolute() or not safe_url(url):
            raise ValueError(f"{text!r} is not an https URL (or http on loopback)")
        if url.path not in ("", "/") or url.query_string or url.fragment:
            raise ValueError(f"{text!r} must be an origin, with no path or query")
        origin = str(url.origin())
        if origin not in hosts:
            hosts.append(origin)
    if not hosts:
        raise ValueError("at least one Stringee API host is needed")
    return tuple(hosts)


def where(url: URL) -> str:
    """A URL fit for logs and errors: no query (a signed URL's query is a credential)."""
    return str(url.with_user(None).with_query(None).with_fragment(None))
