"""Every replica's copy of the tenants' configuration: each tenant's call policies, resolved once,
and which tenant a platform account or a called number belongs to. Webhooks look these up in
memory; no database query on the common path.

Policies. The tenant ``default`` keeps the environment's and ``CALLVAULT_CONFIG``'s policies
(:meth:`Settings.policy_for`, unchanged). Any other tenant's policy is, key by key, its number's
keys over its queue's over the tenant's own over the deployment's defaults (the environment and
the file's top level), with two exceptions: the continue URL is each contact centre's own and is
never inherited from the deployment, and the retention is always kept within the tenant's
``retention_min`` and ``retention_max`` (``tenant apply`` checks the values it is given; an
inherited default may still fall outside them).

Freshness. Writers of the tenant tables (:mod:`service.tenants.store`: ``tenant apply``,
``tenant create``, ``/api/tenants``) send ``NOTIFY callvault_tenants`` in their transaction. Each
replica holds one connection that LISTENs on it and re-reads everything when told (a burst of
notifications costs one read), and also every :data:`REFRESH_S` seconds, in case a notification
was lost or the tables were written by hand. The connection is reopened when it drops (and
pinged at each refresh, so a hung one is noticed); after reopening it re-reads, so nothing
missed meanwhile stays missed.

Misses. Something found in the copy is used as is, however old, so webhooks keep working while
the database is away. Something *not* found (an account or number that is not there) is only
believed from a copy read in the last :data:`MISS_TRUST_S` seconds with no change announced
since; otherwise it is read again first, and when that cannot be done the answer is
:class:`DatabaseUnavailable` (503, the platform retries or takes its fallback URL), never a
403 for an account that may well be known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import asyncpg
from aiohttp import web

from service.config import Policy, Settings
from service.db import Conn, queries, tenancy
from service.db.pool import connect, reach
from service.errors import ConfigError, DatabaseUnavailable
from service.web.context import POOL, SETTINGS

log = logging.getLogger(__name__)
Q = queries.load("service.tenants")

CHANNEL = "callvault_tenants"  # what service.tenants.store.announce notifies
LISTENER_NAME = "callvault-listener"  # application_name of the listening connection
REFRESH_S = 60.0  # the safety net: re-read this often whatever the listener says
MISS_TRUST_S = 5.0  # "not there" is believed from a copy at most this old
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0

# The keys of a stored tenant, queue or number policy that a call's Policy carries, by field.
_FIELDS = {
    "consent_mode": "consent_mode",
    "language": "language",
    "continue_url": "continue_url",
    "never_record": "never_record",
    "retention": "retention_s",
    "gather_timeout": "gather_timeout_s",
    "gather_retries": "gather_retries",
}


def _changes(stored: Mapping[str, Any]) -> dict[str, Any]:
    return {_FIELDS[key]: value for key, value in stored.items() if key in _FIELDS}


class TenantPolicies:
    """One tenant's policies: its own and its queues' resolved when the configuration is read,
    a number's on its first call (then kept)."""

    def __init__(
        self,
        defaults: Policy,
        policy: Mapping[str, Any],
        queues: Mapping[str, Mapping[str, Any]],
        numbers: Mapping[str, tuple[str | None, Mapping[str, Any]]],
    ) -> None:
        self._policy = policy
        self._queue_keys = queues
        self._low: int | None = policy.get("retention_min")
        self._high: int | None = policy.get("retention_max")
        # the continue URL is the contact centre's own: never the deployment's
        self.base = self._bounded(
            replace(defaults, **{"queue": None, "continue_url": None, **_changes(policy)})
        )
        self.queues = {
            name: self._bounded(replace(self.base, queue=name, **_changes(raw)))
            for name, raw in queues.items()
        }
        # a number's policy is made on its first call, not for all 10,000 numbers at each read
        self._numbers = numbers
        self._resolved: dict[tuple[str, str | None], Policy] = {}

    def _bounded(self, policy: Policy) -> Policy:
        retention = policy.retention_s
        if self._low is not None:
            retention = max(retention, self._low)
        if self._high is not None:
            retention = min(retention, self._high)
        return policy if retention == policy.retention_s else replace(policy, retention_s=retention)

    def policy_for(self, called: str | None, queue: str | None = None) -> Policy:
        """As :meth:`Settings.policy_for`: a queue named by the webhook URL wins over the number's
        own queue, and the number's own keys win over both."""
        queue = queue or None
        if queue is not None and queue not in self.queues:
            raise ConfigError(f"queue: unknown queue {queue!r}")
        entry = self._numbers.get(called) if called is not None else None
        if entry is None:
            return self.base if queue is None else self.queues[queue]
        assert called is not None
        found = self._resolved.get((called, queue))
        if found is None:
            own_queue, raw = entry
            own = _changes(raw)
            # an explicit queue wins over the number's own; a number without keys of its own
            # takes that queue's policy as is
            start = self.queues.get(queue or own_queue or "", self.base)
            found = self._bounded(replace(start, **own)) if own else start
            self._resolved[(called, queue)] = found
        return found

    def stored(self, key: str, called: str | None) -> Any:
        """A stored key no :class:`Policy` field carries (a platform's own, such as Stringee's
        ``continue_scco``): the number's, else its own queue's, else the tenant's; None if unset."""
        own_queue, raw = self._numbers.get(called or "", (None, {}))
        for keys in (raw, self._queue_keys.get(own_queue or "", {}), self._policy):
            if keys.get(key) is not None:
                return keys[key]
        return None


@dataclass(frozen=True)
class Snapshot:
    """The tenant tables as one consistent read."""

    tenants: Mapping[str, TenantPolicies]
    # platform -> account id -> tenant -> the account's secret references
    accounts: Mapping[str, Mapping[str, Mapping[str, Mapping[str, str]]]]
    numbers: Mapping[str, str]  # called number -> tenant
    # platform -> account id -> tenant -> the account's plain settings (e.g. an API key sid)
    account_settings: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]] = field(
        default_factory=dict
    )


async def read(conn: Conn, defaults: Policy) -> Snapshot:
    """Everything a webhook may need, in one repeatable-read transaction."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        tenant_rows = await conn.fetch(Q["directory_policies"])
        queue_rows = await conn.fetch(Q["directory_queues"])
        number_rows = await conn.fetch(Q["directory_numbers"])
        account_rows = await conn.fetch(Q["directory_accounts"])
    queues: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in queue_rows:
        queues.setdefault(r["tenant_id"], {})[r["name"]] = r["policy"]
    numbers: dict[str, dict[str, tuple[str | None, Mapping[str, Any]]]] = {}
    owners: dict[str, str] = {}
    for r in number_rows:
        numbers.setdefault(r["tenant_id"], {})[r["number"]] = (r["queue"], r["policy"])
        owners[r["number"]] = r["tenant_id"]
    accounts: dict[str, dict[str, dict[str, Mapping[str, str]]]] = {}
    plain: dict[str, dict[str, dict[str, Mapping[str, Any]]]] = {}
    for r in account_rows:
        by_id = accounts.setdefault(r["platform"], {})
        by_id.setdefault(r["account_id"], {})[r["tenant_id"]] = r["secrets"]
        plain.setdefault(r["platform"], {}).setdefault(r["account_id"], {})[r["tenant_id"]] = r[
            "settings"
        ]
    tenants = {
        r["id"]: TenantPolicies(
            defaults, r["policy"], queues.get(r["id"], {}), numbers.get(r["id"], {})
        )
        for r in tenant_rows
        if r["id"] != tenancy.DEFAULT  # its policies are the settings'
    }
    return Snapshot(tenants, accounts, owners, plain)


async def read_pool(pool: Any, defaults: Policy) -> Snapshot:
    """A fresh read through ``pool`` (the CLI and tests, which have no application)."""
    with tenancy.as_tenant(tenancy.ALL):  # the operator's tables, not tenant data
        async with pool.acquire() as conn:
            return await read(conn, defaults)


class Directory:
    """The replica's copy of the tenant tables, kept fresh by LISTEN/NOTIFY (see the module)."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool[Any],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.clock = clock
        # read when made, so a test may change the module's figures before the app starts
        self.refresh_s = REFRESH_S
        self.miss_trust_s = MISS_TRUST_S
        self.snapshot: Snapshot | None = None
        self.listening = False  # a connection is LISTENing and has read since it began
        self.loads = 0  # successful reads
        self._read_at = -math.inf
        self._failed_at = -math.inf
        self._listened_at = -math.inf
        self._lost_at = -math.inf  # when a listening connection was last lost
        self._loss_reported = False
        self._announced = 0  # notifications received
        self._read_for = 0  # the last notification the copy is known to include
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # --- lookups -------------------------------------------------------------------------------

    def policy_for(
        self, tenant: str | None, called: str | None, queue: str | None = None
    ) -> Policy:
        if tenant is None or tenant == tenancy.DEFAULT:
            return self.settings.policy_for(called, queue)
        found = self.snapshot.tenants.get(tenant) if self.snapshot is not None else None
        if found is None:
            # only a tenant whose account was resolved gets here, from this same copy; a tenant
            # removed since is better retried than answered with another tenant's policy
            raise DatabaseUnavailable("the tenant's policy is not loaded; try again shortly")
        return found.policy_for(called, queue)

    async def for_miss(self) -> Snapshot:
        """A copy recent enough to say "not there" from: this one if it was read in the last
        :attr:`miss_trust_s` seconds and no change was announced since, else a fresh read;
        :class:`DatabaseUnavailable` when none can be had (a failed read is not retried for
        :attr:`miss_trust_s` seconds, so an outage does not add a timeout to every webhook)."""
        if self._trusted():
            assert self.snapshot is not None
            return self.snapshot
        if self._failed_at > self._read_at and self.clock() - self._failed_at < self.miss_trust_s:
            raise DatabaseUnavailable("the tenant configuration cannot be read; try again shortly")
        return await self.reload(unless_trusted=True)

    def _trusted(self) -> bool:
        return (
            self.snapshot is not None
            and self._read_for == self._announced
            and self.clock() - self._read_at < self.miss_trust_s
            and self._read_at > self._lost_at
        )

    async def latest(self) -> Snapshot | None:
        """This copy, however old; read now if there is none yet; None when that cannot be done
        (a lookup that can do without the tables, such as a media source for the CLI)."""
        if self.snapshot is not None:
            return self.snapshot
        try:
            return await self.reload()
        except DatabaseUnavailable:
            return None

    # --- reading -------------------------------------------------------------------------------

    async def reload(self, *, unless_trusted: bool = False) -> Snapshot:
        async with self._lock:
            if unless_trusted and self._trusted():  # another task read it while we waited
                assert self.snapshot is not None
                return self.snapshot
            announced = self._announced
            try:
                with tenancy.as_tenant(tenancy.ALL):  # the operator's tables, not tenant data
                    async with reach(
                        self.pool,
                        acquire_timeout_s=self.settings.db_acquire_timeout_s,
                        work_timeout_s=self.settings.db_statement_timeout_s,
                    ) as conn:
                        snapshot = await read(conn, self.settings.defaults)
            except DatabaseUnavailable:
                self._failed_at = self.clock()
                raise
            self.snapshot = snapshot
            self._read_at = self.clock()
            self._read_for = announced
            self.loads += 1
            return snapshot

    # --- listening -----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.reload()
        except DatabaseUnavailable:
            log.warning(
                "tenant configuration unreadable at start: webhooks of tenants' accounts answer "
                "503 until it can be read"
            )
        self._task = asyncio.create_task(self._listen(), name="tenant-directory")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _announce(self, *_: object) -> None:
        self._announced += 1
        self._wake.set()

    async def _listen(self) -> None:
        delay = RECONNECT_MIN_S
        while True:
            began = self.clock()
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must outlive anything the database does
                listened = self._listened_at >= began
                if listened or not self._loss_reported:  # once per outage, not per attempt
                    log.warning(
                        "tenant configuration listener lost; reconnecting",
                        extra={"error": type(exc).__name__},
                    )
                self._loss_reported = True
                if listened:  # a connection that worked: start the back-off over
                    delay = RECONNECT_MIN_S
            if self.clock() - self._read_at >= self.refresh_s:
                # the safety net goes on while nobody listens
                with contextlib.suppress(DatabaseUnavailable):
                    await self.reload()
            await asyncio.sleep(delay)  # a back-off between attempts, not a wait for a result
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _listen_once(self) -> None:
        url = self.settings.database_url
        assert url is not None
        conn = await connect(url)
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.execute(f"SET application_name = '{LISTENER_NAME}'")
            await conn.add_listener(CHANNEL, self._announce)
            # read after LISTEN: a change committed from now on is announced to us
            self._wake.clear()
            await self.reload()
            self.listening = True
            self._listened_at = self.clock()
            if self._loss_reported:  # the first connection is silent: start-up logs enough
                log.info("listening for tenant configuration changes again")
                self._loss_reported = False
            while True:
                announced = await self._until_announced(lost)
                if lost.is_set():
                    raise ConnectionError("the listening connection closed")
                if not announced:  # the periodic read: first make sure the line is alive
                    async with asyncio.timeout(self.settings.db_statement_timeout_s):
                        await conn.fetchval("SELECT 1")
                self._wake.clear()  # before reading: a change announced meanwhile wakes us again
                await self.reload()
        finally:
            if self.listening:  # changes may go unannounced from here: misses are re-read
                self._lost_at = self.clock()
            self.listening = False
            conn.terminate()  # immediate; close() would wait for a server that may be gone

    async def _until_announced(self, lost: asyncio.Event) -> bool:
        waits = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(lost.wait())}
        try:
            await asyncio.wait(waits, timeout=self.refresh_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return self._wake.is_set()


TENANT_DIRECTORY = web.AppKey("tenant_directory", Directory)

V = TypeVar("V")


def directory_view(
    app: web.Application, view: Callable[[Snapshot], V]
) -> Callable[[], Awaitable[V | None]]:
    """Each lookup reads the replica's directory (kept fresh by NOTIFY), seen through ``view``
    (a platform's own picture of its accounts); None when the tables cannot be read."""

    async def latest() -> V | None:
        read = await app[TENANT_DIRECTORY].latest()
        return view(read) if read is not None else None

    return latest


def pool_view(
    pool: Any, defaults: Policy, view: Callable[[Snapshot], V]
) -> Callable[[], Awaitable[V | None]]:
    """Each lookup reads the tables afresh through ``pool`` (the CLI and tests: no
    application), seen through ``view``."""

    async def fresh() -> V | None:
        return view(await read_pool(pool, defaults))

    return fresh


async def directory_ctx(app: web.Application) -> AsyncIterator[None]:
    """The application's directory (``cleanup_ctx``, after the pool): read, then listened for."""
    directory = Directory(app[SETTINGS], app[POOL])
    app[TENANT_DIRECTORY] = directory
    await directory.start()
    yield
    await directory.stop()


def policy_for(app: web.Application, called: str | None, queue: str | None = None) -> Policy:
    """The policy of a call to ``called`` for the tenant the running webhook belongs to."""
    return app[TENANT_DIRECTORY].policy_for(tenancy.current(), called, queue)


async def call_policy(app: web.Application, called: str | None, queue: str | None) -> Policy:
    """The policy of a call to ``called`` for the running webhook's tenant. A tenant this copy
    does not hold yet (created moments ago; a PBX's token names its tenant without any account
    lookup) is read first. A queue the platform names that the configuration lacks is an
    operator's slip, not the caller's: they get the number's policy (and are still told)."""
    directory = app[TENANT_DIRECTORY]
    tenant = tenancy.current()
    if tenant not in (None, tenancy.DEFAULT, tenancy.ALL) and (
        directory.snapshot is None or tenant not in directory.snapshot.tenants
    ):
        found = await directory.for_miss()
        if tenant not in found.tenants:
            # the tenant exists (a token or an account of it got us here) but came in a way no
            # one announced (rows written by hand): read once more rather than refuse the call
            await directory.reload()
    try:
        return policy_for(app, called, queue)
    except ConfigError as exc:
        log.warning("falling back to the number's policy: %s", exc.message)
        return policy_for(app, called)
