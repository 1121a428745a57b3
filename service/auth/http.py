"""Bearer-token authentication and role checks for the API, with a brake on guessing.

Missing, unknown or revoked token → 401; a role the route does not allow → 403. A client
address with more than ``FAILURE_LIMIT`` failed attempts within a minute gets 429 with
Retry-After instead of 401 for its further failures. The token is looked up first: a valid
token is never refused because of failures from the same address (behind a proxy or a NAT that
address is shared). The client address is the peer's, or, when the peer is one of
``CALLVAULT_TRUSTED_PROXIES``, the rightmost address in ``X-Forwarded-For`` that is not a
trusted proxy (the left part of that header is whatever the client chose to send). The failure
counts live in this replica's memory: a guesser spread over N replicas gets N times the budget,
still far too little to guess a 256-bit token.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from service.auth import PLATFORM_ROLE, Principal, authenticate
from service.db import tenancy
from service.errors import BadRequest, Forbidden, NotFound, Unauthorized
from service.errors import TooManyAttempts as TooManyAttempts
from service.vocabulary import Role
from service.web.context import SETTINGS, database

FAILURE_LIMIT = 10
WINDOW_S = 60.0
PRINCIPAL = web.RequestKey("principal", Principal)
TENANT_HEADER = "Callvault-Tenant"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FailureBrake:
    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, client: str) -> deque[float]:
        window = self._failures[client]
        cutoff = time.monotonic() - WINDOW_S
        while window and window[0] < cutoff:
            window.popleft()
        return window

    def fail(self, client: str) -> None:
        """Count a failed attempt; past the limit, refuse it with the time to wait."""
        recent = self._recent(client)
        if len(recent) >= FAILURE_LIMIT:
            error = TooManyAttempts("too many failed attempts; try again later")
            error.retry_after_s = max(1, math.ceil(recent[0] + WINDOW_S - time.monotonic()))
            raise error
        recent.append(time.monotonic())
        if len(self._failures) > 10_000:  # bound the memory a scan of addresses can take
            self._failures.pop(next(iter(self._failures)))


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: web.Request, trusted: Sequence[Network]) -> str:
    """The address the request came from: the peer, unless the peer is a trusted proxy; then
    ``X-Forwarded-For`` read from the right, skipping trusted proxies (rightmost untrusted)."""
    peer = request.remote or "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
    ]
    client = peer
    for hop in reversed(hops):
        if not hop:
            continue
        client = hop[:64]
        if not _trusted(hop, trusted):
            break
    return client


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


BRAKE = web.AppKey("auth_brake", FailureBrake)


def allowed_roles(roles: tuple[str, ...]) -> tuple[str, ...]:
    """The roles a route is open to: those named, and ``admin`` unless the route is the
    platform's (``operator``): a tenant's admin never manages tenants."""
    return roles if Role.OPERATOR in roles or Role.ADMIN in roles else (*roles, Role.ADMIN)


def requires(*roles: str, tenant_optional: bool = False) -> Callable[[Handler], Handler]:
    """Allow the route to these roles (and to ``admin``, except on ``operator`` routes).
    ``tenant_optional``: a platform token without the tenant header acts for the platform
    (``'*'``) whatever its role; only for routes that read no tenant's data."""
    allowed = allowed_roles(roles)

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            principal: Principal | None = None
            if scheme.lower() == "bearer" and token.strip():
                # looked up by its hash before its tenant is known: across tenants
                with tenancy.as_tenant(tenancy.ALL):
                    async with database(request.app) as conn:
                        principal = await authenticate(conn, token.strip())
            if principal is None:
                trusted = request.app[SETTINGS].trusted_proxies
                request.app[BRAKE].fail(client_address(request, trusted))
                raise Unauthorized("a valid bearer token is required")
            if principal.role not in allowed:
                raise Forbidden(f"the {principal.role} role may not do this")
            tenant = await _tenant_for(request, principal, tenant_optional)
            request[PRINCIPAL] = principal
            # everything the request reads or writes is the token's tenant's
            with tenancy.as_tenant(tenant):
                return await handler(request)

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        guarded.roles = roles  # type: ignore[attr-defined]
        return guarded

    return wrap


async def _tenant_for(request: web.Request, principal: Principal, optional: bool = False) -> str:
    """The tenant a request acts for: its token's; for a platform token, the tenant named by
    the ``Callvault-Tenant`` header (an operator without one acts for the platform, ``'*'``).
    A header naming another tenant than a tenant token's, or no tenant at all, is 404: the
    answer must not tell whether a tenant exists."""
    asked = request.headers.get(TENANT_HEADER)
    if principal.tenant is not None:
        if asked is not None and asked != principal.tenant:
            raise NotFound("no such tenant", code="unknown_tenant")
        return principal.tenant
    if asked is None:
        if principal.role == PLATFORM_ROLE or optional:
            return tenancy.ALL
        raise BadRequest(
            f"a platform token names the tenant it acts for in the {TENANT_HEADER} header",
            code="tenant_required",
        )
    with tenancy.as_tenant(tenancy.ALL):
        async with database(request.app) as conn:
            known = await conn.fetchval("SELECT 1 FROM tenants WHERE id = $1", asked[:100])
    if not known:
        raise NotFound("no such tenant", code="unknown_tenant")
    return asked


def principal(request: web.Request) -> Principal:
    found: Principal = request[PRINCIPAL]
    return found
