"""``X-Twilio-Signature`` verification, exactly as Twilio documents it (via ``twilio``'s
RequestValidator: HMAC-SHA1 over the public URL and the sorted form parameters, tried with and
without the port). The URL is ``CALLVAULT_PUBLIC_URL`` + the request's path and query: what the
platform was told to call, not what a proxy in between rewrote the Host header to."""

from __future__ import annotations

import asyncio
import functools
import hmac
import urllib.parse

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from twilio.request_validator import RequestValidator

from service.consent import gate
from service.errors import BadRequest, Forbidden
from service.platforms.twilio import accounts
from service.platforms.twilio.direction import twilio_direction
from service.web.context import SETTINGS
from service.web.untrusted import check_text

SIGNATURE_HEADER = "X-Twilio-Signature"


@functools.lru_cache(maxsize=4)
def _validator(token: str) -> RequestValidator:
    return RequestValidator(token)


async def _form(request: web.Request) -> MultiDictProxy[str]:
    """The body as Twilio sends it: UTF-8 ``application/x-www-form-urlencoded``, strictly
    decoded (aiohttp's own parser raises on raw bytes that are not UTF-8 and silently replaces
    percent-encoded ones)."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise BadRequest("send the webhook as a URL-encoded form", code="bad_form")
    raw = await request.read()
    try:
        pairs = urllib.parse.parse_qsl(
            raw.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=500
        )
    except ValueError:  # UnicodeDecodeError, or too many fields
        raise BadRequest("the webhook body is not a UTF-8 form", code="bad_form") from None
    return MultiDictProxy(MultiDict(pairs))


async def verified_form(request: web.Request) -> tuple[MultiDictProxy[str], str]:
    """The webhook's form parameters and its tenant, or :class:`Forbidden` before anything is
    written. The tenant comes from ``AccountSid`` (and, for an account several tenants share, the
    contact centre's number); the signature is checked with that account's token.

    Parameters PostgreSQL could not store (NUL) are refused after the signature is checked, so
    nothing reaches a query that would fail inside the database."""
    settings = request.app[SETTINGS]
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise Forbidden("missing or invalid X-Twilio-Signature", code="bad_signature")
    if request.content.is_eof():
        params = await _form(request)  # the whole body has arrived: nothing to wait for
    else:
        try:
            # a body trickled byte by byte must not hold the connection (and the cap's slot)
            # for ever
            async with asyncio.timeout(settings.header_timeout_s):
                params = await _form(request)
        except TimeoutError:
            raise web.HTTPRequestTimeout(reason="the request body did not arrive in time") from None
    centre = gate.contact_centre_number(
        twilio_direction(params.get("Direction")),
        params.get("From") or None,
        params.get("To") or None,
    )
    account = await accounts.resolve(request.app, params.get("AccountSid", ""), centre)
    if not account.auth_token:
        raise Forbidden("missing or invalid X-Twilio-Signature", code="bad_signature")
    url = settings.public_url + request.path_qs
    validator = _validator(account.auth_token)
    # The exact URL first (one HMAC); only on a mismatch the library's full check, which also
    # tries the URL with and without the port, as Twilio may sign either.
    exact = validator.compute_signature(url, params)
    if not hmac.compare_digest(exact, signature) and not validator.validate(url, params, signature):
        raise Forbidden("missing or invalid X-Twilio-Signature", code="bad_signature")
    for name, value in params.items():
        check_text(name, "a parameter name", code="bad_form")
        check_text(value, name[:64], code="bad_form")
    return params, account.tenant
