"""X-STRINGEE-SIGNATURE: accepted exactly when it is Stringee's HMAC-SHA1 of what it signs."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import pytest

from service.platforms.stringee import signature

SECRET = "project-signing-secret"
# the Request-URI of developer.stringee.com/docs/validating-requests-are-coming-from-stringee
DOC_URI = (
    "/test/answer_url-from_internal.php?from=user_1&to=user_2&fromInternal=true&userId=user_1"
    "&projectId=22512&callId=call-vn-1-ABCDWXKUQM-1542377678921&custom="
)
BODY = b'{"call_status":"ended","call_id":"call-vn-1-ZD3IDIXS1J-1515820305478"}'


def stringee_signs(secret: str, data: bytes) -> str:
    """Stringee's PHP sample: base64_encode(hash_hmac("sha1", $data, $key, true))."""
    return base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha1).digest()).decode()


def test_sign_is_the_documented_scheme() -> None:
    assert signature.sign(SECRET, BODY) == stringee_signs(SECRET, BODY)


def test_post_body_signature_accepted_and_any_change_refused() -> None:
    header = stringee_signs(SECRET, BODY)
    assert signature.verify_body([SECRET], BODY, header)
    assert not signature.verify_body([SECRET], BODY + b" ", header)
    assert not signature.verify_body([SECRET], BODY.replace(b"ended", b"ringing"), header)
    assert not signature.verify_body(["another-secret"], BODY, header)
    assert not signature.verify_body([SECRET], BODY, None)
    assert not signature.verify_body([SECRET], BODY, "")


def test_get_signature_covers_the_request_uri() -> None:
    header = stringee_signs(SECRET, DOC_URI.encode())
    assert signature.verify_request_uri([SECRET], DOC_URI, header)
    # the query is signed too: a changed caller number does not verify
    assert not signature.verify_request_uri(
        [SECRET], DOC_URI.replace("from=user_1", "from=user_9"), header
    )


def test_spaces_are_signed_as_percent_20() -> None:
    signed_uri = "/answer?from=84909986668&custom=hello%20world"
    header = stringee_signs(SECRET, signed_uri.encode())
    assert signature.verify_request_uri([SECRET], signed_uri, header)
    # a proxy that passed the space through unescaped: still what Stringee signed
    assert signature.verify_request_uri(
        [SECRET], "/answer?from=84909986668&custom=hello world", header
    )


def test_public_url_path_prefix_stripped_by_a_proxy() -> None:
    signed_uri = "/callvault/telephony/stringee/answer?from=1&to=2&uuid=abc"
    header = stringee_signs(SECRET, signed_uri.encode())
    seen = "/telephony/stringee/answer?from=1&to=2&uuid=abc"
    assert not signature.verify_request_uri([SECRET], seen, header)
    assert signature.verify_request_uri(
        [SECRET], seen, header, public_url="https://cc.example.vn/callvault/"
    )


@pytest.mark.parametrize(
    "variant",
    [
        lambda h: h.rstrip("="),  # padding dropped
        lambda h: h.replace("+", "-").replace("/", "_"),  # URL-safe alphabet
        lambda h: f"  {h}\t",  # whitespace around it
    ],
)
def test_encoding_variants_of_the_same_digest(variant: Callable[[str], str]) -> None:
    # a body whose signature has both + and / in it, so the URL-safe variant differs
    data = next(
        d
        for d in (str(i).encode() for i in range(10_000))
        if {"+", "/"} <= set(stringee_signs(SECRET, d))
    )
    header = stringee_signs(SECRET, data)
    assert variant(header) != header
    assert signature.verify_body([SECRET], data, variant(header))


@pytest.mark.parametrize(
    "header",
    [
        "not base64 at all!",
        base64.b64encode(b"short").decode(),  # base64, but not a SHA-1 digest
        base64.b64encode(hashlib.sha1(BODY, usedforsecurity=False).digest()).decode(),  # no key
        "A" * 500,
        "ü" * 28,
    ],
)
def test_malformed_headers_refused(header: str) -> None:
    assert not signature.verify_body([SECRET], BODY, header)


def test_rotation_accepts_either_secret_and_skips_empty_ones() -> None:
    header = stringee_signs("new-secret", BODY)
    assert signature.verify_body(["", "old-secret", "new-secret"], BODY, header)
    assert not signature.verify_body(["", "old-secret"], BODY, header)
    # an empty secret is never a key: a header made with "" does not verify
    assert not signature.verify_body([""], BODY, stringee_signs("", BODY))
