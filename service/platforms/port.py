"""The platform port: all the core asks of a telephony platform, and all an adapter provides.

An adapter (one folder under ``service/platforms/``) does four things, in this order on every
webhook:

1. **verify** the request (signature or token) and find its tenant and platform account
   (:class:`Inbound`); a request that fails is refused before anything is written;
2. **map** it onto the consent gate's steps (:mod:`service.consent.gate`: ``start_call``,
   ``consent_step``, ``status_step``) and intake's ``recording_callback``
   (:mod:`service.intake.callbacks`);
3. **render** the gate's :class:`~service.consent.gate.Decision` in the platform's language
   (TwiML, SCCO JSON, the PBX API's JSON);
4. be a **media source** per platform account (:class:`MediaSources`: fetch and delete, as Twilio
   and Stringee are), or accept the recording **uploaded** (the PBX): then ``media_sources``
   answers None and the upload handler hands the file to intake's store step;
5. optionally **pause and resume** a call's recording on request (:class:`RecordingControl`:
   Twilio can); a platform that cannot answers None from ``recording_control`` (Stringee has no
   such API; a PBX pauses its own recording and reports it through the PBX API).

The core imports this module and never an adapter (``tests/test_platform_port.py`` checks it):
the recording job asks for a :class:`MediaSource` by platform name, tenant and account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from service.errors import NoMediaSource as NoMediaSource
from service.errors import PlatformKeepsCopy as PlatformKeepsCopy
from service.errors import PlatformUnavailable as PlatformUnavailable
from service.errors import RecordingNotActive as RecordingNotActive
from service.tenants.model import Platform

if TYPE_CHECKING:
    from aiohttp import web

    from service.consent.gate import Decision

__all__ = [
    "Adapter",
    "Downloaded",
    "Inbound",
    "MediaSource",
    "MediaSources",
    "NoMediaSource",
    "Opener",
    "Platform",
    "PlatformKeepsCopy",
    "PlatformUnavailable",
    "RecordingControl",
    "RecordingNotActive",
    "Writable",
    "media_source",
]


@dataclass(frozen=True)
class Inbound:
    """A verified webhook: whose it is and what it said."""

    tenant: str
    # the platform account it came through (Twilio: the AccountSid); stored on the call, so
    # its media is later fetched and deleted with that account's credentials
    account: str | None
    params: Mapping[str, str]


@dataclass(frozen=True)
class Downloaded:
    """A recording fetched (or uploaded) to a local file, hashed on the way."""

    path: Path
    size: int
    sha256: str
    content_type: str


class Writable(Protocol):
    """Where a download's bytes go, in order: a file opened for writing, or one that seals
    what it is given (:class:`service.storage.sealed.SealingFile`). Written off the event loop
    (in the pool its ``executor`` attribute names, if it has one), closed on it."""

    def write(self, data: bytes, /) -> int: ...

    def writelines(self, chunks: Iterable[bytes], /) -> None: ...

    def close(self) -> None: ...


# How a download opens ``dest`` (on the loop, once per attempt); plain ``open(dest, "wb")``
# when none is given.
Opener = Callable[[Path], Awaitable[Writable]]


class MediaSource(Protocol):
    """One platform account's recordings, by the platform's recording id."""

    async def download(
        self, ref: str, dest: Path, fmt: str = "wav", *, opener: Opener | None = None
    ) -> Downloaded:
        """Stream the media to ``dest`` (size-capped, checked to be audio), opened with
        ``opener`` if given, once per attempt; the SHA-256 and size are those of the media."""
        ...

    async def delete(self, ref: str) -> None:
        """Delete the platform's copy; already gone counts as deleted. A platform with no way
        to delete (Stringee) raises :class:`PlatformKeepsCopy`."""
        ...


class MediaSources(Protocol):
    """A platform's media sources, one per platform account."""

    async def source(self, tenant: str, account: str | None) -> MediaSource:
        """The media API of ``account`` as registered to ``tenant`` (None: a call from before
        calls recorded their account, or the deployment's own configured account)."""
        ...


async def media_source(
    sources: Mapping[str, MediaSources], platform: str, tenant: str, account: str | None
) -> MediaSource:
    found = sources.get(platform)
    if found is None:
        raise NoMediaSource(f"platform {platform!r} has no media source to fetch from")
    return await found.source(tenant, account)


class RecordingControl(Protocol):
    """Pauses and resumes the recording of a call in progress, at the platform."""

    async def set_paused(
        self, tenant: str, account: str | None, external_id: str, paused: bool
    ) -> None:
        """Pause (``paused``) or resume the call's current recording, with the credentials of
        ``account`` as registered to ``tenant``. Returns once the platform has done it;
        otherwise :class:`RecordingNotActive` or :class:`PlatformUnavailable`."""
        ...


class Adapter(Protocol):
    """What a platform folder exports (as ``ADAPTER``) for the application to mount."""

    @property
    def platform(self) -> Platform: ...

    @property
    def routes(self) -> web.RouteTableDef:
        """Its webhooks, each doing verify → map → render."""
        ...

    async def verify(self, request: web.Request) -> Inbound:
        """The request's tenant, account and parameters, or
        :class:`~service.errors.Forbidden` / :class:`~service.errors.BadRequest`."""
        ...

    def render(self, request: web.Request, decision: Decision) -> web.Response:
        """The gate's decision as the platform's answer."""
        ...

    def media_sources(self, app: web.Application) -> MediaSources | None:
        """Its media per account, or None for a platform that uploads recordings."""
        ...

    def recording_control(self, app: web.Application) -> RecordingControl | None:
        """Pause and resume on request, or None for a platform that cannot be asked to."""
        ...
