"""URLs fit for messages: a database or endpoint URL named in an error keeps its user, host,
port, path and options, and loses its password (in the user part or a ``password=`` option)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# a URL in running text: up to white space or a quote, not taking the sentence's punctuation
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,:;!?)]")


def url_without_password(url: str) -> str:
    """``postgresql://cv:secret@db/cv?sslpassword=x`` → ``postgresql://cv@db/cv``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a broken [IPv6] host: drop whatever sits between ':' and '@'
        return re.sub(r"//([^/@:]*):[^@/]*@", r"//\1@", url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hostport}" if user else hostport
    query = parts.query
    options = parse_qsl(query, keep_blank_values=True)
    if any("password" in key.lower() for key, _ in options):
        query = urlencode([(k, v) for k, v in options if "password" not in k.lower()], safe="/:")
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing to hide: leave it exactly as given
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_urls(text: str) -> str:
    """Every URL in ``text`` without its password."""
    return _URL.sub(lambda m: url_without_password(m.group()), text)
