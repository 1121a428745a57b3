"""Stringee's :class:`~service.platforms.port.MediaSources`: each project's recordings, fetched
with that project's REST JWT (``X-STRINGEE-AUTH``) from the configured hosts. Stringee has no
delete: :meth:`StringeeSource.delete` raises :class:`~service.platforms.port.PlatformKeepsCopy`,
so intake writes ``platform_copy_retained``. A 429 longer than we wait in place reaches the
job queue as :class:`~service.platforms.stringee.media.RateLimited`, whose ``retry_after_s``
the worker honours."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from service.config import Settings
from service.platforms.port import Downloaded, Opener, PlatformKeepsCopy
from service.platforms.stringee.accounts import Snapshot, api_key
from service.platforms.stringee.media import StringeeMedia
from service.platforms.stringee.rest_auth import TokenSource
from service.tenants import policies
from service.web.context import SETTINGS

SnapshotSource = Callable[[], Awaitable[Snapshot | None]]


class StringeeSource:
    """One project's recordings (a :class:`~service.platforms.port.MediaSource`)."""

    def __init__(self, media: StringeeMedia) -> None:
        self.media = media

    async def download(
        self, ref: str, dest: Path, fmt: str = "wav", *, opener: Opener | None = None
    ) -> Downloaded:
        # the record action asked Stringee for `fmt`; the audio's own bytes say what came
        got = await self.media.download(ref, dest, opener=opener)
        return Downloaded(got.path, got.size, got.sha256, got.content_type)

    async def delete(self, ref: str) -> None:
        raise PlatformKeepsCopy(f"Stringee documents no delete for recording {ref}")


class StringeeMediaSources:
    def __init__(
        self, settings: Settings, session: aiohttp.ClientSession, snapshot: SnapshotSource
    ) -> None:
        self.settings = settings
        self.session = session
        self._snapshot = snapshot
        # one token source per API key, so a token is reused until near its expiry
        self._tokens: dict[tuple[str, str], TokenSource] = {}

    @classmethod
    def for_app(cls, app: web.Application, session: aiohttp.ClientSession) -> StringeeMediaSources:
        """Read through the replica's tenant directory (kept fresh by NOTIFY)."""
        return cls(app[SETTINGS], session, policies.directory_view(app, Snapshot.of))

    @classmethod
    def for_pool(
        cls, settings: Settings, session: aiohttp.ClientSession, pool: Any
    ) -> StringeeMediaSources:
        """Read the tables afresh on each lookup (the CLI and tests: no application)."""
        return cls(settings, session, policies.pool_view(pool, settings.defaults, Snapshot.of))

    async def source(self, tenant: str, account: str | None) -> StringeeSource:
        snapshot = await self._snapshot()
        key = await asyncio.to_thread(api_key, self.settings, snapshot, tenant, account)
        tokens = self._tokens.get((key.sid, key.secret))
        if tokens is None:
            tokens = self._tokens[(key.sid, key.secret)] = TokenSource(key)
        media = StringeeMedia(
            self.session,
            tokens,
            self.settings.stringee_api_urls,
            max_bytes=self.settings.max_recording_bytes,
            timeout_s=float(self.settings.download_timeout_s),
        )
        return StringeeSource(media)
