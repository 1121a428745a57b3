"""The REST JWT: Stringee's documented header and claims, accepted by the fake's check."""

from __future__ import annotations

import base64
import hashlib
import hmac

import jwt
import pytest

from service.platforms.stringee.rest_auth import ApiKey, TokenSource, mint
from tests.stringee_fake import FakeStringee

# shaped like the key in Stringee's project API sample (a 44-character secret)
KEY = ApiKey("SK9ntgoHY5m0y38x39kXPQ1xI6PX5nOrJE", "QUoyb2cyUHA1c0U2NUtCV0o1VTVpaHczc0ZVWXI4Mw==")


def test_header_and_claims_as_documented() -> None:
    token = mint(KEY, now=1_800_000_000, ttl_s=3600)
    assert jwt.get_unverified_header(token) == {
        "alg": "HS256",
        "typ": "JWT",
        "cty": "stringee-api;v=1",
    }
    claims = jwt.decode(token, KEY.secret, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {
        "jti": "SK9ntgoHY5m0y38x39kXPQ1xI6PX5nOrJE-1800000000",
        "iss": KEY.sid,
        "exp": 1_800_003_600,
        "rest_api": True,
    }


def test_the_fake_accepts_ours_and_refuses_near_misses() -> None:
    now = 1_800_000_000.0
    fake = FakeStringee(KEY.sid, KEY.secret, "signing", clock=lambda: now)
    assert fake.token_problem(mint(KEY, now=now)) is None
    assert fake.token_problem(mint(KEY, now=now - 7200)) == "expired"
    other = ApiKey(KEY.sid, "V3JvbmdXcm9uZ1dyb25nV3JvbmdXcm9uZ1dyb25nV3I=")
    assert fake.token_problem(mint(other, now=now)) == "bad token: InvalidSignatureError"
    claims = {"jti": "j", "iss": KEY.sid, "exp": int(now) + 60, "rest_api": True}
    no_cty = jwt.encode(claims, KEY.secret)
    assert fake.token_problem(no_cty) == "header cty is not stringee-api;v=1"
    not_rest = jwt.encode(
        claims | {"rest_api": False}, KEY.secret, headers={"cty": "stringee-api;v=1"}
    )
    assert fake.token_problem(not_rest) == "rest_api is not true"


def test_token_source_reuses_then_refreshes_before_expiry() -> None:
    now = [1_800_000_000.0]
    source = TokenSource(KEY, clock=lambda: now[0], ttl_s=3600)
    first = source.token()
    now[0] += 3000
    assert source.token() == first
    now[0] += 400  # inside the refresh margin
    assert source.token() != first


def test_the_secret_never_shows_in_repr() -> None:
    assert KEY.secret not in repr(KEY)
    with pytest.raises(ValueError):
        ApiKey("AC123456789", "s")
    with pytest.raises(ValueError):
        ApiKey("SK123456789", "")


def test_a_short_secret_from_stringee_still_signs_without_warnings() -> None:
    # warnings are errors in this suite: a short key must not turn into one
    token = mint(ApiKey(KEY.sid, "short"), now=1_800_000_000)
    signing_input, _, sig = token.rpartition(".")
    expected = hmac.new(b"short", signing_input.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)) == expected
