"""Bearer-token authentication and role checks for the API, with a brake on guessing.

Missing, unknown or revoked token → 401; a role the route does not allow → 403; more than
``FAILURE_LIMIT`` failed attempts from one client address within a minute → 429 with
Retry-After, before the token is even looked up. The failure counts live in this replica's
memory: a guesser spread over N replicas gets N times the budget, still far too little to guess
a 256-bit token.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.auth import Principal, authenticate
from service.context import POOL
from service.errors import CallvaultError, Forbidden, Unauthorized

FAILURE_LIMIT = 10
WINDOW_S = 60.0
PRINCIPAL = web.RequestKey("principal", Principal)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TooManyAttempts(CallvaultError):
    status = 429
    code = "too_many_requests"


class FailureBrake:
    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, client: str) -> deque[float]:
        window = self._failures[client]
        cutoff = time.monotonic() - WINDOW_S
        while window and window[0] < cutoff:
            window.popleft()
        return window

    def check(self, client: str) -> None:
        if len(self._recent(client)) >= FAILURE_LIMIT:
            raise TooManyAttempts("too many failed attempts; try again in a minute")

    def fail(self, client: str) -> None:
        self._recent(client).append(time.monotonic())
        if len(self._failures) > 10_000:  # bound the memory a scan of addresses can take
            self._failures.pop(next(iter(self._failures)))


BRAKE = web.AppKey("auth_brake", FailureBrake)


def requires(*roles: str) -> Callable[[Handler], Handler]:
    """Allow the route to these roles (and always to ``admin``)."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            brake = request.app[BRAKE]
            client = request.remote or "unknown"
            brake.check(client)
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            principal: Principal | None = None
            if scheme.lower() == "bearer" and token.strip():
                async with request.app[POOL].acquire() as conn:
                    principal = await authenticate(conn, token.strip())
            if principal is None:
                brake.fail(client)
                raise Unauthorized("a valid bearer token is required")
            if principal.role != "admin" and principal.role not in roles:
                raise Forbidden(f"the {principal.role} role may not do this")
            request[PRINCIPAL] = principal
            return await handler(request)

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        guarded.roles = roles  # type: ignore[attr-defined]
        return guarded

    return wrap


def principal(request: web.Request) -> Principal:
    found: Principal = request[PRINCIPAL]
    return found
