"""Job kinds, registered beside their handlers (as arq and procrastinate do).

A feature declares its handler where it lives::

    @registry.job_kind("recording")
    async def recording(ctx: JobContext) -> None: ...

and the worker runs whatever was registered by the modules the application imports. A handler
finds what it needs in ``ctx.resources`` (:class:`Resources`, built once by the application), so
adding a job kind touches its own module only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from service.jobs.worker import Handler

if TYPE_CHECKING:
    from service.config import Settings
    from service.observability.metrics import Metrics
    from service.personal.numbers import PhoneVault
    from service.platforms.port import MediaSources
    from service.storage.registry import StoreRegistry

_HANDLERS: dict[str, Handler] = {}


@dataclass(frozen=True)
class Resources:
    """What job handlers share: made once per process by the application."""

    settings: Settings
    stores: StoreRegistry
    vault: PhoneVault
    # platform name -> its media per account (platforms that upload have none)
    media: Mapping[str, MediaSources]
    metrics: Metrics | None = None


def job_kind(kind: str) -> Callable[[Handler], Handler]:
    """Register ``handler`` for jobs of ``kind`` (once: a second handler for a kind is a bug)."""

    def register(handler: Handler) -> Handler:
        existing = _HANDLERS.get(kind)
        if existing is not None and existing is not handler:
            raise ValueError(f"job kind {kind!r} is registered twice")
        _HANDLERS[kind] = handler
        return handler

    return register


def registered() -> Mapping[str, Handler]:
    """Every registered kind and its handler (read-only)."""
    return MappingProxyType(_HANDLERS)
