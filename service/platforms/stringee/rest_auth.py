"""The JWT Stringee's REST API wants in ``X-STRINGEE-AUTH`` (or an ``access_token`` query
parameter): HS256 with the API key's secret, header ``cty: stringee-api;v=1``, payload ``jti``,
``iss`` (the API key SID), ``exp`` and ``rest_api: true``
(developer.stringee.com/docs/pcc-rest-api/icc-rest-api-authentication; Stringee's own samples in
stringeecom/server-samples access_token/*/access_token_for_rest_api.* build the same).

The token is signed with PyJWT; the clock is injected so tests and the fake agree on ``exp``.
The module is not called ``jwt`` so that it never shadows the library."""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from jwt.warnings import InsecureKeyLengthWarning

AUTH_HEADER = "X-STRINGEE-AUTH"
CONTENT_TYPE = "stringee-api;v=1"
DEFAULT_TTL_S = 3600  # Stringee's samples mint tokens for an hour
# refresh this long before expiry, so a token never expires between minting and use
REFRESH_MARGIN_S = 300
API_KEY_SID = re.compile(r"^SK[A-Za-z0-9]{8,64}$")


@dataclass(frozen=True)
class ApiKey:
    """A Stringee project's API key: SID (``SK...``) and secret. ``repr`` hides the secret."""

    sid: str
    secret: str

    def __post_init__(self) -> None:
        if not API_KEY_SID.match(self.sid):
            raise ValueError("a Stringee API key SID starts with SK and is alphanumeric")
        if not self.secret:
            raise ValueError("the Stringee API key secret is empty")

    def __repr__(self) -> str:
        return f"ApiKey(sid={self.sid!r}, secret=<hidden>)"


def mint(key: ApiKey, *, now: float, ttl_s: int = DEFAULT_TTL_S) -> str:
    """A REST token valid from ``now`` for ``ttl_s`` seconds."""
    issued = int(now)
    payload = {
        # Stringee's samples use "<sid>-<unix time>"; its prose says "apiKeySid_timestamp"
        "jti": f"{key.sid}-{issued}",
        "iss": key.sid,
        "exp": issued + ttl_s,
        "rest_api": True,
    }
    with warnings.catch_warnings():
        # Stringee issues the API key secret; its length is not ours to choose
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(payload, key.secret, algorithm="HS256", headers={"cty": CONTENT_TYPE})


class TokenSource:
    """Hands out a REST token, minting a new one when the current one is near its expiry."""

    def __init__(
        self, key: ApiKey, *, clock: Callable[[], float] = time.time, ttl_s: int = DEFAULT_TTL_S
    ) -> None:
        if ttl_s <= REFRESH_MARGIN_S:
            raise ValueError(f"ttl_s must exceed the refresh margin of {REFRESH_MARGIN_S} s")
        self.key = key
        self.clock = clock
        self.ttl_s = ttl_s
        self._token: str | None = None
        self._expires = 0.0

    def token(self) -> str:
        now = self.clock()
        if self._token is None or now >= self._expires - REFRESH_MARGIN_S:
            self._token = mint(self.key, now=now, ttl_s=self.ttl_s)
            self._expires = int(now) + self.ttl_s
        return self._token

    def headers(self) -> dict[str, str]:
        return {AUTH_HEADER: self.token()}
