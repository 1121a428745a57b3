"""Twilio's recording media API: download a recording to a file, delete Twilio's copy.

URLs are built from ``CALLVAULT_TWILIO_API_URL``, the call's account (its credentials given by
:mod:`service.platforms.twilio.accounts`; the configured account by default) and a RecordingSid
that must look like one: a URL taken from a callback is never fetched (no SSRF). The media GET
may be redirected (Twilio hands out signed CDN URLs): at most two hops, https only, and the
credentials go to the configured API origin alone. Downloads stream to disk in chunks, hashed
on the way, capped in size and checked to be audio.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from service import errors as _errors
from service.config import Settings
from service.errors import BadRequest
from service.jobs import Permanent
from service.platforms.pieces import Pieces
from service.platforms.port import (
    Downloaded,
    Opener,
    PlatformUnavailable,
    RecordingNotActive,
    Writable,
)

# the exception classes live in service/errors.py (under platform-named names there)
MediaNotFound = _errors.TwilioMediaNotFound
MediaError = _errors.TwilioMediaError

RECORDING_SID = re.compile(r"^RE[0-9a-fA-F]{32}$")
CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
# Twilio's name for "the call's recording in progress, whatever its RecordingSid"
CURRENT_RECORDING = "Twilio.CURRENT"
# A pause is asked for while an agent waits to take a card: answer (either way) within this
PAUSE_TIMEOUT_S = 10.0
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 2  # hops after the API's own answer, e.g. API -> CDN -> CDN's storage
NOT_FOUND_ATTEMPTS = 3  # GETs answered 404 before a recording is dead-lettered
LIST_PAGE_SIZE = 50  # Twilio's default page size; one call rarely has more than one recording
LIST_MAX_PAGES = 20


@dataclass(frozen=True)
class Credentials:
    """What the REST API is called with for one account: the URL names ``account_sid``; HTTP
    Basic auth is an API key (SID and secret) or the AccountSid and its auth token."""

    account_sid: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class ListedRecording:
    """One item of Twilio's Recordings list resource."""

    sid: str
    call_sid: str
    status: str  # in-progress, paused, stopped, processing, completed, absent, deleted
    duration_s: int | None


def check_recording_sid(sid: str) -> str:
    if not RECORDING_SID.match(sid):
        raise BadRequest("RecordingSid is not a Twilio recording id", code="bad_recording_sid")
    return sid


def _looks_like(fmt: str, head: bytes) -> bool:
    if fmt == "wav":
        return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    return head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redirect_allowed(api_url: str, target: URL) -> bool:
    """Where a media redirect may lead: https anywhere; plain http only to a loopback address
    and only when the configured API origin is itself loopback http (the tests' fake Twilio)."""
    if target.user is not None or target.password is not None or not target.host:
        return False
    if target.scheme == "https":
        return True
    api = URL(api_url)
    return (
        target.scheme == "http"
        and api.scheme == "http"
        and _is_loopback(api.host)
        and _is_loopback(target.host)
    )


def _where(url: URL) -> str:
    """A URL fit for logs and errors: a signed redirect's query string is a credential, and so
    is any user:password in it."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


class TwilioMedia:
    """One Twilio account's recordings (a :class:`~service.platforms.port.MediaSource`)."""

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        credentials: Credentials | None = None,
    ) -> None:
        if credentials is None:  # the deployment's own account (the tenant `default`)
            if not settings.twilio_account_sid or not settings.twilio_auth_token:
                raise ValueError("Twilio credentials are required")
            credentials = Credentials(
                settings.twilio_account_sid,
                settings.twilio_account_sid,
                settings.twilio_auth_token,
            )
        self.api_url = settings.twilio_api_url
        self.account_sid = credentials.account_sid
        self.base = f"{settings.twilio_api_url}/2010-04-01/Accounts/{credentials.account_sid}"
        self.headers = {
            "Authorization": aiohttp.encode_basic_auth(credentials.username, credentials.password)
        }
        self.session = session
        self.max_bytes = settings.max_recording_bytes
        self.timeout = aiohttp.ClientTimeout(
            total=settings.download_timeout_s, sock_connect=10, sock_read=60
        )
        # a 404 after `completed` is retried this quickly, in the same run, before giving up
        self.not_found_backoff_s = min(settings.job_backoff_base_s, 5.0)

    def media_url(self, sid: str, fmt: str = "wav") -> str:
        return f"{self.base}/Recordings/{check_recording_sid(sid)}.{fmt}"

    async def download(
        self, sid: str, dest: Path, fmt: str = "wav", *, opener: Opener | None = None
    ) -> Downloaded:
        """Fetch the media. Twilio sends ``completed`` when the file is available, so a 404 is
        not "not ready yet": it is asked again a few times quickly (a replica's view may lag),
        then the job is dead-lettered with what to check (:class:`Permanent`)."""
        url = self.media_url(sid, fmt)
        for attempt in range(1, NOT_FOUND_ATTEMPTS + 1):
            try:
                return await self._download_once(sid, url, dest, fmt, opener)
            except MediaNotFound:
                if attempt == NOT_FOUND_ATTEMPTS:
                    raise Permanent(
                        f"recording {sid}: Twilio answered 404 Not Found to {attempt} GETs of "
                        f"{url} although its callback said `completed` (the file is available "
                        f"then). Check that {self.account_sid} (CALLVAULT_TWILIO_ACCOUNT_SID, or "
                        "the tenant's [twilio] account_sid) is the (sub)account that made the "
                        "recording, that CALLVAULT_TWILIO_API_URL names the region "
                        "holding it (e.g. https://api.sydney.au1.twilio.com for AU1), and "
                        "whether it was already deleted or sent to external storage. Any copy "
                        "at Twilio is kept; requeue the job once fixed."
                    ) from None
                await asyncio.sleep(self.not_found_backoff_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _download_once(
        self, sid: str, url: str, dest: Path, fmt: str, opener: Opener | None
    ) -> Downloaded:
        size = 0
        try:
            async with self._get_following(sid, URL(url)) as resp:
                declared = resp.content_length
                if declared is not None and declared > self.max_bytes:
                    raise Permanent(f"recording {sid}: {declared} bytes exceeds the cap")
                # opened and closed on the loop (one syscall each): a file opened in a thread whose
                # awaiting task is cancelled meanwhile would be left open
                out: Writable = dest.open("wb") if opener is None else await opener(dest)
                pieces = Pieces(out)
                try:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        if size == 0 and not _looks_like(fmt, chunk[:16]):
                            raise Permanent(f"recording {sid}: the media is not {fmt} audio")
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise Permanent(f"recording {sid}: larger than the cap")
                        await pieces.add(chunk)
                    await pieces.flush()
                finally:
                    out.close()
                if size == 0:
                    raise MediaError(f"recording {sid}: empty body")
                if declared is not None and size != declared:
                    raise MediaError(f"recording {sid}: got {size} of {declared} bytes")
        except aiohttp.ClientError as exc:
            raise MediaError(f"recording {sid}: {type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise MediaError(f"recording {sid}: download timed out") from exc
        return Downloaded(dest, size, pieces.digest.hexdigest(), CONTENT_TYPES[fmt])

    @asynccontextmanager
    async def _get_following(self, sid: str, url: URL) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET the media with credentials from the configured API origin, following at most
        ``MAX_REDIRECTS`` redirects (Twilio may answer 302/307 to a CDN with a signed URL) with
        no credentials, to allowed targets only. Yields the 200 response."""
        headers: dict[str, str] | None = self.headers  # only the first request carries them
        for hop in range(MAX_REDIRECTS + 1):
            async with self.session.get(
                url, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as resp:
                if resp.status == 404 and hop == 0:
                    raise MediaNotFound(f"recording {sid}: 404 from {_where(url)}")
                if resp.status in REDIRECTS:
                    location = resp.headers.get("Location")
                    if not location:
                        raise MediaError(f"recording {sid}: HTTP {resp.status} with no Location")
                    # encoded=True: a signed URL must go back byte for byte (%2F stays %2F)
                    target = url.join(URL(location, encoded=True))
                    if hop == MAX_REDIRECTS:
                        raise Permanent(
                            f"recording {sid}: more than {MAX_REDIRECTS} redirects from "
                            f"{_where(URL(self.api_url))} (last to {_where(target)}); refused"
                        )
                    if not redirect_allowed(self.api_url, target):
                        raise Permanent(
                            f"recording {sid}: redirect to {_where(target)} refused "
                            "(media is fetched over https only, with no credentials in the URL)"
                        )
                    url, headers = target, None
                    continue
                if resp.status != 200:
                    where = "Twilio" if hop == 0 else _where(url)
                    raise MediaError(f"recording {sid}: HTTP {resp.status} from {where}")
                yield resp
                return
        raise AssertionError("unreachable")

    async def list_recordings(self, call_sid: str) -> list[ListedRecording]:
        """The call's recordings from ``GET .../Recordings.json?CallSid=`` (every page).

        Pages are followed by ``next_page_uri``, a path on the same API origin; anything else
        is refused, so credentials never leave the configured origin."""
        url: URL | None = URL(f"{self.base}/Recordings.json").with_query(
            {"CallSid": call_sid, "PageSize": str(LIST_PAGE_SIZE)}
        )
        prefix = URL(self.base).path + "/Recordings.json"
        found: list[ListedRecording] = []
        pages = 0
        while url is not None:
            pages += 1
            if pages > LIST_MAX_PAGES:
                raise MediaError(f"listing recordings of a call: more than {LIST_MAX_PAGES} pages")
            payload = await self._get_json(url, "listing recordings of a call")
            items = payload.get("recordings")
            if not isinstance(items, list):
                raise MediaError(
                    "listing recordings of a call: no `recordings` array in the answer"
                )
            for item in items:
                if not isinstance(item, dict):
                    continue
                sid, status = str(item.get("sid") or ""), str(item.get("status") or "")
                if not RECORDING_SID.match(sid) or not status:
                    continue
                duration = str(item.get("duration") or "")
                found.append(
                    ListedRecording(
                        sid,
                        str(item.get("call_sid") or ""),
                        status,
                        int(duration) if duration.isdigit() else None,
                    )
                )
            next_uri = payload.get("next_page_uri")
            url = None
            if next_uri:
                candidate = URL(str(next_uri))
                if candidate.is_absolute() or not candidate.path.startswith(prefix):
                    raise MediaError("listing recordings of a call: next_page_uri leaves the API")
                url = URL(self.api_url).join(candidate)
        return found

    async def _get_json(self, url: URL, what: str) -> dict[str, Any]:
        try:
            async with self.session.get(
                url,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=60),
                allow_redirects=False,
            ) as resp:
                if resp.status in (401, 403):
                    raise MediaError(
                        f"{what}: HTTP {resp.status} from Twilio (check the credentials of "
                        f"account {self.account_sid}: its auth token or API key)"
                    )
                if resp.status != 200:
                    raise MediaError(f"{what}: HTTP {resp.status} from Twilio")
                payload = await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise MediaError(f"{what}: {type(exc).__name__}") from exc
        except TimeoutError as exc:
            raise MediaError(f"{what}: timed out") from exc
        except ValueError as exc:
            raise MediaError(f"{what}: the answer is not JSON") from exc
        if not isinstance(payload, dict):
            raise MediaError(f"{what}: the answer is not a JSON object")
        return payload

    async def delete(self, sid: str) -> None:
        """Delete Twilio's copy; already gone (404) counts as deleted."""
        url = f"{self.base}/Recordings/{check_recording_sid(sid)}.json"
        try:
            async with self.session.delete(
                url,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=30),
                allow_redirects=False,
            ) as resp:
                if resp.status in (200, 204, 404):
                    return
                raise MediaError(
                    f"deleting recording {sid}: HTTP {resp.status} from Twilio "
                    f"(account {self.account_sid})"
                )
        except aiohttp.ClientError as exc:
            raise MediaError(f"deleting recording {sid}: {type(exc).__name__}") from exc
        except TimeoutError as exc:
            raise MediaError(f"deleting recording {sid}: timed out") from exc

    async def set_recording_paused(self, call_sid: str, paused: bool) -> None:
        """Pause (``Status=paused``, ``PauseBehavior=skip``: the paused span is left out of the
        recording, not filled with silence) or resume (``Status=in-progress``) the call's
        current recording: ``POST .../Calls/{CallSid}/Recordings/Twilio.CURRENT.json``.
        Twilio answers 404 when the call has no recording in progress:
        :class:`RecordingNotActive`; anything else but 200 is :class:`PlatformUnavailable`."""
        if not CALL_SID.match(call_sid):
            raise RecordingNotActive("the call's id is not a Twilio CallSid")
        url = f"{self.base}/Calls/{call_sid}/Recordings/{CURRENT_RECORDING}.json"
        form = (
            {"Status": "paused", "PauseBehavior": "skip"} if paused else {"Status": "in-progress"}
        )
        what = "pausing the recording" if paused else "resuming the recording"
        try:
            async with self.session.post(
                url,
                data=form,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=PAUSE_TIMEOUT_S, sock_connect=5),
                allow_redirects=False,
            ) as resp:
                if resp.status == 200:
                    return
                if resp.status == 404:
                    raise RecordingNotActive(
                        f"{what}: Twilio has no recording in progress on the call"
                    )
                if resp.status in (401, 403):
                    raise PlatformUnavailable(
                        f"{what}: HTTP {resp.status} from Twilio (check the credentials of "
                        f"account {self.account_sid}: its auth token or API key)"
                    )
                raise PlatformUnavailable(f"{what}: HTTP {resp.status} from Twilio")
        except aiohttp.ClientError as exc:
            raise PlatformUnavailable(
                f"{what}: Twilio could not be reached ({type(exc).__name__})", unreachable=True
            ) from exc
        except TimeoutError as exc:
            raise PlatformUnavailable(
                f"{what}: Twilio did not answer within {PAUSE_TIMEOUT_S:.0f} s", unreachable=True
            ) from exc
