"""The HTTP listener of ``callvault serve``: aiohttp's runner with a deadline for request heads,
a cap on open connections, and out-of-descriptor errors logged at most once per interval.

Slow clients (a header line every few seconds, from thousands of sockets) must not hold the
process: every connection must send a whole request head within ``CALLVAULT_HEADER_TIMEOUT`` of
opening or of its last response. aiohttp's keep-alive timer does exactly that: it starts when
the connection opens, is not extended by bytes that do not complete a request, and closes a
connection still waiting for one. Above ``CALLVAULT_MAX_CONNECTIONS`` open connections (also
kept below the process's file-descriptor limit), a new connection closes the oldest one that is
still waiting for a request head, so a webhook that sends its request at once gets in however
many trickling sockets are open; when every connection is busy with a request, the new one is
refused. In production a proxy stays in front (deploy/nginx.conf, deploy/k8s/ingress.yaml):
this is the last line, not the first.

aiohttp offers no hook for the protocol factory in ``web.run_app``, so :func:`run` is
``run_app``'s loop with :class:`CappedSite` in place of ``TCPSite``. The loop is uvloop's: the
same asyncio API with its transports, timers and polling in C, so less of the webhook's CPU
goes to the loop itself (issue 18). Out of descriptors, libuv accepts and closes at once the
connections it has no descriptor for and keeps the server listening, without telling the
loop (asyncio's loop would log each failed accept): ``process_open_fds`` on ``/metrics`` shows
it instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import resource
import socket
import time
from collections.abc import Callable

import uvloop
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

# Set by a part of the application that cannot go on (the job worker's claim loop ended by
# itself): :func:`run` then shuts down as on SIGTERM but returns 1, so a supervisor (compose's
# restart policy, Kubernetes) starts the process again; health checks alone move neither.
EXIT_REQUESTED = web.AppKey("exit_requested", asyncio.Event)

# File descriptors kept for everything but client connections: database pools, the object
# store's threads, recordings being written, the embedded server's pipes, logs.
FD_RESERVE = 128
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _Refuse(asyncio.Protocol):
    """Closes the connection at once: every open one is busy with a request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()  # a reset, not a lingering close: the descriptor is free at once


def _waiting_for_a_request(handler: RequestHandler) -> bool:
    # aiohttp's handler: no request being answered and none parsed and queued, so all it has
    # is (part of) a head still to come. Unknown internals count as busy: never closed.
    return not getattr(handler, "_request_in_progress", True) and not getattr(
        handler, "_messages", True
    )


def _head_arrived(handler: RequestHandler) -> bool:
    """Whether a whole request head already sits in the connection's socket buffer, read by
    peeking on a duplicate of its descriptor. A webhook accepted in the same burst as hundreds of
    trickling sockets has sent its head, but the loop has not read it yet: it must not look like
    one of them."""
    transport = handler.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        with socket.socket(fileno=os.dup(sock.fileno())) as peek:
            pending = peek.recv(16384, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # nothing pending (BlockingIOError), or closed meanwhile
        return False
    return b"\r\n\r\n" in pending


class ConnectionCap:
    """The protocol factory: aiohttp's, with at most ``limit`` connections open.

    At the limit, a new connection closes the oldest one still waiting for its request head,
    preferring one that has had ``grace_s`` to send it (a webhook that has just connected sends
    its head within milliseconds; a slow client has been at it for seconds). When every open
    connection is busy with a request, the new one is refused."""

    def __init__(
        self,
        server: web.Server,
        limit: int,
        grace_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self.limit = limit
        self.grace_s = grace_s
        self.clock = clock
        self.evicted = 0
        self.refused = 0
        self._opened: dict[RequestHandler, float] = {}  # (handlers take no weak references)

    def __call__(self) -> asyncio.BaseProtocol:
        # a connection already closed stays listed until its task ends: it holds no socket
        connections = [h for h in self.server.connections if h.transport is not None]
        now = self.clock()
        if len(connections) >= self.limit:
            victim = self._victim(connections, now)
            if victim is None:
                self.refused += 1
                return _Refuse()
            victim.force_close()
            self.evicted += 1
        handler = self.server()
        if len(self._opened) >= 2 * self.limit:  # forget closed connections, now and then
            alive = set(connections)
            self._opened = {h: t for h, t in self._opened.items() if h in alive}
        self._opened[handler] = now
        return handler

    def _victim(self, connections: list[RequestHandler], now: float) -> RequestHandler | None:
        """The oldest connection still waiting for a request head that has had ``grace_s`` to
        send it; failing that, the oldest waiting at all (aiohttp lists them oldest first).
        Never one whose whole head has arrived but is not read yet."""
        waiting = [h for h in connections if _waiting_for_a_request(h)]
        for handler in waiting:
            if now - self._opened.get(handler, now) >= self.grace_s and not _head_arrived(handler):
                return handler
        for handler in waiting:
            if not _head_arrived(handler):
                return handler
        return None


class CappedSite(web.TCPSite):
    def __init__(
        self, runner: web.AppRunner, host: str, port: int, *, limit: int, grace_s: float
    ) -> None:
        super().__init__(runner, host, port)
        self.limit = limit
        self.grace_s = grace_s
        self.cap: ConnectionCap | None = None

    async def start(self) -> None:
        server = self._runner.server
        assert server is not None
        self.cap = ConnectionCap(server, self.limit, self.grace_s)
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would bind aiohttp's
        self._server = await asyncio.get_running_loop().create_server(
            self.cap, self._host, self._port, backlog=self._backlog, reuse_address=True
        )


def connection_limit(wanted: int) -> int:
    """``wanted``, kept below the file-descriptor limit (raised to the hard limit first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - FD_RESERVE))


class RepeatBrake(logging.Filter):
    """Lets one record about running out of file descriptors (or buffers) through per
    ``interval_s``; the next one let through says how many were dropped. Everything else
    passes untouched. An accept loop out of descriptors otherwise logs as fast as it spins."""

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self.suppressed = 0
        self._last = -float("inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if not _out_of_resources(record):
            return True
        now = self.clock()
        if now - self._last < self.interval_s:
            self.suppressed += 1
            return False
        self._last = now
        if self.suppressed:
            record.suppressed_repeats = self.suppressed
            self.suppressed = 0
        return True


def _out_of_resources(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES:
        return True
    return "Too many open files" in record.getMessage()


def run(
    app: web.Application,
    *,
    host: str,
    port: int,
    header_timeout_s: float,
    max_connections: int,
    shutdown_timeout_s: float,
    access_log_class: type[AbstractAccessLogger],
    on_listening: Callable[[int], None],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop,
) -> int:
    """Serve ``app`` until SIGINT or SIGTERM (returns 0) or until its :data:`EXIT_REQUESTED`
    is set (returns 1), then shut down as ``web.run_app`` does, on a loop from
    ``loop_factory``."""
    brake = RepeatBrake()
    for handler in logging.getLogger().handlers:
        handler.addFilter(brake)
    limit = connection_limit(max_connections)
    loop = loop_factory()
    asyncio.set_event_loop(loop)

    exit_requested = app.get(EXIT_REQUESTED) or asyncio.Event()
    code = 0

    async def serve() -> None:
        nonlocal code
        runner = web.AppRunner(
            app,
            handle_signals=True,
            access_log_class=access_log_class,
            keepalive_timeout=header_timeout_s,
            shutdown_timeout=shutdown_timeout_s,
        )
        await runner.setup()
        try:
            grace_s = min(1.0, header_timeout_s / 2)
            await CappedSite(runner, host, port, limit=limit, grace_s=grace_s).start()
            # Everything start-up made (modules, phone metadata, the SDKs, caches) lives as long
            # as the process: out of the collector's sight, so its full collections walk only
            # what requests allocate instead of stalling every in-flight webhook for a walk of
            # the whole heap (the voice webhook's p99, issue 18).
            gc.freeze()
            on_listening(limit)
            await exit_requested.wait()  # or until a signal raises GracefulExit
            code = 1
        finally:
            await runner.cleanup()

    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        _cancel_all(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        # as asyncio.run does: the default executor's threads finish before the loop closes
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)  # as asyncio.run leaves it: no closed loop left current
    return code


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
