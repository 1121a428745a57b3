"""``callvault worker`` and ``serve --role``: which parts of callvault one process runs.

``serve`` runs everything by default (role ``all``, what ``make serve`` wants). An operator who
must keep the webhooks quick while recordings are taken in and purged runs two kinds of process
(issue 18: a caller waited behind intake and purge on the same event loop, GIL and pool):

* ``serve --role web`` (or ``CALLVAULT_ROLE=web``): webhooks, API and pages; claims no job and
  runs no scheduled pass. Its webhooks queue jobs and ``NOTIFY`` as always.
* ``callvault worker`` (``serve --role worker``): claims the queue's jobs (intake, data-subject
  requests) and runs the scheduled passes (purge, ledger seals, reconcile, the start-up
  re-hash). It answers only ``/healthz``, ``/readyz`` and ``/metrics``, on ``CALLVAULT_PORT``,
  so it is probed and scraped like a web replica; SIGTERM hands its jobs' leases back.

A worker is background work: it lowers its own CPU priority to ``CALLVAULT_WORKER_NICE``
(default 10; 0 leaves it) before it starts a thread, so on a node it shares with web replicas the
scheduler runs their webhooks first, and it waits for CPU only that nobody else wants. Its
database sessions are named ``callvault-worker`` (a web replica's ``callvault-web``) in
``pg_stat_activity``.

Jobs are PostgreSQL rows claimed with ``FOR UPDATE SKIP LOCKED`` and every pass claims its rows
the same way, so any number of either kind may run against one database. The command line's
``--role`` wins over ``CALLVAULT_ROLE``."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from service.config import ProcessRole, Settings


def add_parsers(
    sub: Any,  # argparse's subparsers action (of the CLI's own parser class)
    serve: argparse.ArgumentParser,
    cmd_serve: Callable[[argparse.Namespace], int],
) -> None:
    """``serve``'s ``--role`` and the ``worker`` command (``serve --role worker``)."""
    serve.add_argument(
        "--role",
        choices=[r.value for r in ProcessRole],
        help="all (default: CALLVAULT_ROLE, else all), web (no jobs or scheduled passes) or "
        "worker (only jobs and scheduled passes: `callvault worker`)",
    )
    p = sub.add_parser(
        "worker",
        help="run the job queue (intake, requests) and the scheduled passes (purge, seals, "
        "reconcile) without the webhooks, beside `serve --role web` replicas",
    )
    p.set_defaults(func=cmd_serve, role=ProcessRole.WORKER.value)


def with_role(settings: Settings, args: argparse.Namespace) -> Settings:
    """``settings`` with the command line's role, when it gave one."""
    role = getattr(args, "role", None)
    return settings if role is None else replace(settings, role=ProcessRole(role))


def lower_priority(settings: Settings) -> None:
    """A worker's niceness raised to ``settings.worker_nice`` (never lowered: an unprivileged
    process may not, and one started nicer stays so). Linux keeps a niceness per thread and a
    new thread inherits its creator's, so this runs before the process starts any thread."""
    if settings.role is not ProcessRole.WORKER or settings.worker_nice <= 0:
        return
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if current < settings.worker_nice:
        os.setpriority(os.PRIO_PROCESS, 0, settings.worker_nice)
    logging.getLogger("service").info(
        "worker CPU priority lowered", extra={"nice": max(current, settings.worker_nice)}
    )
