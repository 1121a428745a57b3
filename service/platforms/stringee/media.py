"""Stringee's recording download: ``GET {host}/v1/call/recording/{id}`` with the REST JWT in
``X-STRINGEE-AUTH`` (developer.stringee.com/docs/rest-api-reference/call-rest-api-download-
recorded-file, as cited by users of it), streamed to a file.

- The id is a recording id from the record eventUrl, or the call id (which the endpoint accepts);
  it must look like a Stringee id, and no URL from a callback is ever fetched (no SSRF).
- Each configured host (:mod:`service.platforms.stringee.hosts`) is asked in turn: a 404 or a
  failure at one region moves on to the next; 404 everywhere is :class:`MediaNotFound`.
- ``429 Too Many Requests`` (users report a limit of about 30 requests a period) is honoured:
  its ``Retry-After`` (seconds or an HTTP date) is waited out in place when it is short
  (``max_wait_s``, a few times at most), otherwise :class:`RateLimited` carries it to the job
  queue so the retry is scheduled no sooner.
- Redirects (Stringee answers ``301`` from http to https) are followed at most twice, to https
  (or loopback http) only; the JWT goes only to the configured hosts.
- The body is capped in size, hashed on the way, and must start like audio (MP3, WAV or MP4).
  A JSON body where audio was expected is :class:`MediaNotReady`: users report small non-audio
  answers while a recording is still being processed.

There is no delete: Stringee documents no API to delete a recording, so after a copy is stored
the ledger says :data:`PLATFORM_COPY_RETAINED` and the operator sets the retention of recordings
in Stringee's dashboard (this folder's README.md).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from service import errors as _errors
from service.errors import RateLimited as RateLimited
from service.jobs import Permanent
from service.platforms.pieces import Pieces
from service.platforms.port import Opener, Writable
from service.platforms.stringee.events import EXTERNAL_ID
from service.platforms.stringee.hosts import parse_hosts, safe_url, where
from service.platforms.stringee.rest_auth import TokenSource

# the exception classes live in service/errors.py (under platform-named names there)
MediaError = _errors.StringeeMediaError
MediaNotFound = _errors.StringeeMediaNotFound
MediaNotReady = _errors.StringeeMediaNotReady

PLATFORM_COPY_RETAINED = "platform_copy_retained"
RECORDING_PATH = "/v1/call/recording/"
CALL_LOG_PATH = "/v1/call/log"  # docs /docs/call-rest-api/call-rest-api-call-log
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 2
HEAD_BYTES = 16  # enough to tell MP3, WAV and MP4 apart
DEFAULT_RETRY_AFTER_S = 5.0  # a 429 without a usable Retry-After


class _TooMany(Exception):
    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    sha256: str
    content_type: str
    host: str  # the configured host that had it


@dataclass(frozen=True)
class LoggedCall:
    """One entry of Stringee's call log: the call's ``id``, its ``uuid`` (what a number's
    answer_url named it) and whether Stringee ``recorded`` it."""

    id: str
    uuid: str | None
    recorded: bool


def logged_calls(answer: object) -> list[LoggedCall]:
    """The calls of a call-log answer (``{"r": 0, "data": {"calls": [...]}}``); ``recorded`` is
    documented as 0/1, accepted as a boolean or text too."""
    if not isinstance(answer, dict) or answer.get("r") != 0:
        message = answer.get("message") if isinstance(answer, dict) else None
        raise MediaError(f"call log: Stringee answered r={_r(answer)} ({str(message)[:100]})")
    data = answer.get("data")
    calls = data.get("calls") if isinstance(data, dict) else None
    if not isinstance(calls, list):
        raise MediaError("call log: no data.calls in Stringee's answer")
    found = []
    for entry in calls:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        uuid = entry.get("uuid")
        recorded = entry.get("recorded")
        found.append(
            LoggedCall(
                entry["id"],
                uuid if isinstance(uuid, str) else None,
                recorded is True or str(recorded).strip().lower() in ("1", "true"),
            )
        )
    return found


def _r(answer: object) -> object:
    return answer.get("r") if isinstance(answer, dict) else None


def audio_type(head: bytes) -> str | None:
    """The content type the first bytes announce, or None when they are not audio."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if head[4:8] == b"ftyp":
        return "audio/mp4"
    return None


def retry_after_seconds(value: str | None, *, now: float) -> float:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date."""
    if not value:
        return DEFAULT_RETRY_AFTER_S
    text = value.strip()
    if text.isascii() and text.isdigit() and len(text) <= 9:
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return DEFAULT_RETRY_AFTER_S
    if when.tzinfo is None:
        return DEFAULT_RETRY_AFTER_S
    return max(0.0, when.timestamp() - now)


def check_media_id(media_id: str) -> str:
    if not EXTERNAL_ID.match(media_id):
        raise Permanent("not a Stringee recording or call id", code="bad_recording_id")
    return media_id


class StringeeMedia:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        tokens: TokenSource,
        hosts: Sequence[str],
        *,
        max_bytes: int,
        timeout_s: float = 600.0,
        max_wait_s: float = 30.0,
        max_waits: int = 3,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.session = session
        self.tokens = tokens
        self.hosts = parse_hosts(hosts)
        self.max_bytes = max_bytes
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10, sock_read=60)
        self.max_wait_s = max_wait_s
        self.max_waits = max_waits
        self.clock = clock
        self.sleep = sleep

    def media_url(self, host: str, media_id: str) -> URL:
        return URL(host).with_path(RECORDING_PATH + check_media_id(media_id))

    async def download(
        self, media_id: str, dest: Path, *, opener: Opener | None = None
    ) -> Downloaded:
        """The recording, written to ``dest``, from the first host that has it."""
        check_media_id(media_id)
        not_found: list[str] = []
        failure: MediaError | None = None
        for host in self.hosts:
            try:
                return await self._from_host(host, media_id, dest, opener)
            except RateLimited:
                raise  # Stringee said when to come back; asking another region is not that
            except MediaNotFound:
                not_found.append(host)
            except MediaError as exc:
                failure = exc
        if failure is None:
            raise MediaNotFound(
                f"recording {media_id}: 404 from {', '.join(not_found)}. Check that the project "
                "records this call, that its region is among the configured Stringee hosts, "
                "and that Stringee's retention has not removed it yet"
            )
        raise failure

    async def call_log(self, call_id: str) -> list[LoggedCall]:
        """The call's entries in Stringee's call log (``GET /v1/call/log?id=``, the REST JWT),
        matched on its ``id`` or ``uuid``, from the first host that knows it. Empty when every
        host answered and none has it; a host that did not answer makes it an error, since that
        host may be the one that has it. A 429 is not waited out: the next pass asks again."""
        check_media_id(call_id)
        failure: MediaError | None = None
        for host in self.hosts:
            url = URL(host).with_path(CALL_LOG_PATH).with_query(id=call_id)
            try:
                async with self.session.get(
                    url, headers=self.tokens.headers(), timeout=self.timeout, allow_redirects=False
                ) as resp:
                    if resp.status == 429:
                        wait = retry_after_seconds(
                            resp.headers.get("Retry-After"), now=self.clock()
                        )
                        raise RateLimited(
                            f"call log: {host} answered 429; retry after {wait:.0f} s", wait
                        )
                    if resp.status != 200:
                        raise MediaError(f"call log: HTTP {resp.status} from {where(url)}")
                    answer = await resp.json(content_type=None)
            except (aiohttp.ClientError, ValueError) as exc:
                failure = MediaError(f"call log: {type(exc).__name__} from {host}")
                continue
            except TimeoutError:
                failure = MediaError(f"call log: {host} timed out")
                continue
            except MediaError as exc:
                failure = exc
                continue
            found = [c for c in logged_calls(answer) if call_id in (c.id, c.uuid)]
            if found:
                return found
        if failure is not None:
            raise failure
        return []

    async def _from_host(
        self, host: str, media_id: str, dest: Path, opener: Opener | None
    ) -> Downloaded:
        url = self.media_url(host, media_id)
        waits = 0
        while True:
            try:
                return await self._fetch(host, media_id, url, dest, opener)
            except _TooMany as too_many:
                wait = too_many.retry_after_s
                if waits >= self.max_waits or wait > self.max_wait_s:
                    raise RateLimited(
                        f"recording {media_id}: {host} answered 429; retry after {wait:.0f} s",
                        retry_after_s=wait,
                    ) from None
                waits += 1
                await self.sleep(wait)

    async def _fetch(
        self, host: str, media_id: str, url: URL, dest: Path, opener: Opener | None
    ) -> Downloaded:
        size = 0
        content_type: str | None = None
        head = b""
        try:
            async with self._get_following(media_id, url) as resp:
                declared = resp.content_length
                if declared is not None and declared > self.max_bytes:
                    raise Permanent(f"recording {media_id}: {declared} bytes exceeds the cap")
                json_body = "json" in (resp.content_type or "")
                # opened and closed on the loop (one syscall each): a file opened in a thread whose
                # awaiting task is cancelled meanwhile would be left open
                out: Writable = dest.open("wb") if opener is None else await opener(dest)
                pieces = Pieces(out)
                try:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise Permanent(f"recording {media_id}: larger than the cap")
                        if content_type is None:
                            head += chunk[: HEAD_BYTES - len(head)]
                            if len(head) >= HEAD_BYTES:
                                content_type = self._audio_or_raise(media_id, head, json_body)
                        await pieces.add(chunk)
                    if content_type is None:  # a body shorter than HEAD_BYTES
                        content_type = self._audio_or_raise(media_id, head, json_body)
                    await pieces.flush()
                finally:
                    out.close()
                if declared is not None and size != declared:
                    raise MediaError(f"recording {media_id}: got {size} of {declared} bytes")
        except aiohttp.ClientError as exc:
            raise MediaError(f"recording {media_id}: {type(exc).__name__} from {host}") from exc
        except TimeoutError as exc:
            raise MediaError(f"recording {media_id}: download from {host} timed out") from exc
        return Downloaded(dest, size, pieces.digest.hexdigest(), content_type, host)

    @staticmethod
    def _audio_or_raise(media_id: str, head: bytes | bytearray, json_body: bool) -> str:
        kind = audio_type(bytes(head[:HEAD_BYTES]))
        if kind is not None:
            return kind
        if json_body or bytes(head[:1]) in (b"{", b"["):
            raise MediaNotReady(
                f"recording {media_id}: Stringee answered JSON, not audio (still processing?)"
            )
        if not head:
            raise MediaNotReady(f"recording {media_id}: empty body")
        raise Permanent(f"recording {media_id}: the media is not MP3, WAV or MP4 audio")

    @asynccontextmanager
    async def _get_following(
        self, media_id: str, url: URL
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET with the JWT, following at most ``MAX_REDIRECTS`` redirects to safe URLs; the
        JWT goes to configured hosts only. Yields the 200 response."""
        for hop in range(MAX_REDIRECTS + 1):
            origin = str(url.origin()) if url.is_absolute() else ""
            headers = self.tokens.headers() if origin in self.hosts else None
            async with self.session.get(
                url, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as resp:
                if resp.status == 404:
                    raise MediaNotFound(f"recording {media_id}: 404 from {where(url)}")
                if resp.status == 429:
                    raise _TooMany(
                        retry_after_seconds(resp.headers.get("Retry-After"), now=self.clock())
                    )
                if resp.status in REDIRECTS:
                    location = resp.headers.get("Location")
                    if not location:
                        raise MediaError(f"recording {media_id}: HTTP {resp.status}, no Location")
                    target = url.join(URL(location, encoded=True))
                    if hop == MAX_REDIRECTS:
                        raise Permanent(
                            f"recording {media_id}: more than {MAX_REDIRECTS} redirects "
                            f"(last to {where(target)}); refused"
                        )
                    if not safe_url(target):
                        raise Permanent(
                            f"recording {media_id}: redirect to {where(target)} refused "
                            "(https only, no credentials in the URL)"
                        )
                    url = target
                    continue
                if resp.status in (401, 403):
                    raise MediaError(
                        f"recording {media_id}: HTTP {resp.status} from {where(url)} (check the "
                        "Stringee API key SID and secret, and that the key belongs to the project)"
                    )
                if resp.status != 200:
                    raise MediaError(f"recording {media_id}: HTTP {resp.status} from {where(url)}")
                yield resp
                return
        raise AssertionError("unreachable")
