"""``X-STRINGEE-SIGNATURE``: base64(HMAC-SHA1(project signing secret, data)), where data is the
raw body of a POST (event_url, an action's eventUrl) and the Request-URI (path and query, spaces
as ``%20``) of a GET (answer_url), as developer.stringee.com/docs/validating-requests-are-coming-
from-stringee documents it.

Verification compares the decoded 20-byte digests in constant time, so a header written with or
without base64 padding, or in the URL-safe alphabet, is the same signature. Several secrets may
be given (a rotation in progress). For a GET, the URI Stringee signed can differ from the one
this process sees: a proxy may strip a path prefix (``CALLVAULT_PUBLIC_URL`` says what Stringee
was told to call) or pass spaces through unescaped; :func:`request_uri_candidates` lists the
forms that are tried.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Sequence

from yarl import URL

SIGNATURE_HEADER = "X-STRINGEE-SIGNATURE"
DIGEST_BYTES = 20  # SHA-1
MAX_HEADER_CHARS = 128  # a base64 SHA-1 is 28; anything much longer is not a signature


def sign(secret: str, data: bytes) -> str:
    """The header value Stringee sends for ``data`` (standard base64, padded)."""
    digest = hmac.new(secret.encode("utf-8"), data, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _decode(header: str) -> bytes | None:
    """The digest a header carries, or None when it is not base64 of 20 bytes."""
    text = header.strip()
    if not text or len(text) > MAX_HEADER_CHARS or not text.isascii():
        return None
    text = text.replace("-", "+").replace("_", "/")  # URL-safe alphabet, same bits
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == DIGEST_BYTES else None


def verify(secrets: Sequence[str], data: Iterable[bytes], header: str | None) -> bool:
    """True when ``header`` is the signature of one of ``data`` under one of ``secrets``.

    Every candidate is computed and compared with :func:`hmac.compare_digest`; the result does
    not depend on which candidate matched first."""
    if header is None:
        return False
    claimed = _decode(header)
    if claimed is None:
        return False
    keys = [s.encode("utf-8") for s in secrets if s]
    ok = False
    for candidate in data:
        for key in keys:
            digest = hmac.new(key, candidate, hashlib.sha1).digest()
            ok |= hmac.compare_digest(digest, claimed)
    return ok


def verify_body(secrets: Sequence[str], body: bytes, header: str | None) -> bool:
    """A POST from Stringee: the signature covers the raw body exactly as received."""
    return verify(secrets, [body], header)


def request_uri_candidates(raw_path_qs: str, public_url: str | None = None) -> list[bytes]:
    """The Request-URIs a GET may have been signed over, most likely first.

    ``raw_path_qs`` is the path and query as received (still percent-encoded). When
    ``public_url`` has a path (``https://host/callvault``) and the request arrived without it,
    the prefixed form is what Stringee signed. Stringee replaces spaces with ``%20`` before
    signing; a literal space that reached us is tried in that form too."""
    forms: list[str] = []
    prefix = URL(public_url).path.rstrip("/") if public_url else ""
    bases = [raw_path_qs]
    if prefix and not raw_path_qs.startswith(prefix + "/"):
        bases.insert(0, prefix + raw_path_qs)
    for base in bases:
        for form in (base, base.replace(" ", "%20")):
            if form not in forms:
                forms.append(form)
    return [f.encode("utf-8") for f in forms]


def verify_request_uri(
    secrets: Sequence[str], raw_path_qs: str, header: str | None, public_url: str | None = None
) -> bool:
    """A GET from Stringee (answer_url): the signature covers the Request-URI."""
    return verify(secrets, request_uri_candidates(raw_path_qs, public_url), header)
