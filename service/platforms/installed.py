"""The platforms this build mounts: each adapter's webhooks, and its media per account."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from service.platforms.pbx.adapter import ADAPTER as PBX
from service.platforms.port import Adapter, MediaSources, RecordingControl
from service.platforms.stringee.adapter import ADAPTER as STRINGEE
from service.platforms.twilio.adapter import ADAPTER as TWILIO

ADAPTERS: tuple[Adapter, ...] = (TWILIO, STRINGEE, PBX)


def add_routes(app: web.Application) -> None:
    for adapter in ADAPTERS:
        app.add_routes(adapter.routes)


def media_sources(app: web.Application) -> Mapping[str, MediaSources]:
    """Platform name -> its media sources (platforms that upload recordings have none)."""
    sources: dict[str, MediaSources] = {}
    for adapter in ADAPTERS:
        found = adapter.media_sources(app)
        if found is not None:
            sources[adapter.platform.value] = found
    return sources


def recording_controls(app: web.Application) -> Mapping[str, RecordingControl]:
    """Platform name -> its pause and resume (platforms that cannot be asked have none)."""
    controls: dict[str, RecordingControl] = {}
    for adapter in ADAPTERS:
        found = adapter.recording_control(app)
        if found is not None:
            controls[adapter.platform.value] = found
    return controls
