"""Short-lived, self-authorising links to one stored object: ``/files/{token}``.

The token names the object key, what it is for and when it expires, and carries an HMAC of all
three (a key derived from ``CALLVAULT_SECRET_KEY``), so it opens exactly that object until then
and nothing else. The route streams from the store (S3 or local) with HTTP Range support, so a
browser's ``<audio>`` element can seek, and the bucket itself is never exposed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.db import tenancy
from service.errors import BadLink as BadLink
from service.errors import LinkExpired as LinkExpired


@dataclass(frozen=True)
class Link:
    key: str
    purpose: str
    expires: int
    download_name: str | None = None
    tenant: str = "default"  # the tenant that asked for the link (its audit trail)
    store: str = "shared"  # the store holding the object (service.storage.registry)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, secret_key: str, *, public_url: str = "", ttl_s: int = 300) -> None:
        self.public_url = public_url
        self.ttl_s = ttl_s
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"callvault", info=b"file-links"
        ).derive(secret_key.encode("utf-8"))

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()

    def sign(
        self,
        key: str,
        purpose: str,
        ttl_s: int,
        download_name: str | None = None,
        store: str = "shared",
    ) -> tuple[str, datetime]:
        expires = int(time.time()) + ttl_s
        fields: dict[str, object] = {"k": key, "p": purpose, "e": expires, "n": download_name}
        tenant = tenancy.current()
        if tenant and tenant != tenancy.DEFAULT:
            fields["t"] = tenant  # the default tenant's links stay as they were
        if store != "shared":
            fields["s"] = store
        body = json.dumps(fields, separators=(",", ":")).encode()
        token = f"{_b64(body)}.{_b64(self._mac(body))}"
        return token, datetime.fromtimestamp(expires, UTC)

    def link(
        self, key: str, purpose: str, download_name: str | None = None, store: str = "shared"
    ) -> dict[str, str]:
        """The API's answer for a short-lived link: ``{"url", "expires_at"}``."""
        token, expires = self.sign(key, purpose, self.ttl_s, download_name, store)
        return {"url": f"{self.public_url}/files/{token}", "expires_at": expires.isoformat()}

    def verify(self, token: str) -> Link:
        try:
            body_part, mac_part = token.split(".", 1)
            body = _unb64(body_part)
            if not hmac.compare_digest(self._mac(body), _unb64(mac_part)):
                raise BadLink("no such file")
            data = json.loads(body)
            link = Link(
                str(data["k"]),
                str(data["p"]),
                int(data["e"]),
                data.get("n"),
                str(data.get("t", tenancy.DEFAULT)),
                str(data.get("s", "shared")),
            )
        except (ValueError, KeyError, TypeError):
            raise BadLink("no such file") from None
        if link.expires < time.time():
            raise LinkExpired("this link has expired; ask for a new one")
        return link


LINKS = web.AppKey("links", LinkSigner)
