"""The ``callvault`` command: one module per command group (each registers its commands with
``add_parser``). Every command exits non-zero with a one-line reason on error: :func:`main` is
the one place that turns an exception into that line."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import NoReturn

from service.cli import (
    calls,
    dsar,
    hold,
    jobs,
    ledger,
    prompts,
    purge,
    receipts,
    recordings,
    secrets,
    serve,
    simulate,
    tenant,
    token,
)
from service.config import load_settings
from service.db.redact import redact_urls, url_without_password
from service.errors import CallvaultError, InternalError

# in the order `callvault --help` lists them
GROUPS = (
    serve,
    prompts,
    ledger,
    token,
    purge,
    hold,
    dsar,
    secrets,
    recordings,
    calls,
    jobs,
    simulate,
    tenant,
    receipts,
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="callvault",
        description="Call-recording consent gate, ledger and retention service.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parser(sub)
    return parser


def _one_line(text: str) -> str:
    """One line with no password in it, however the message was built."""
    return redact_urls(" / ".join(part.strip() for part in text.splitlines() if part.strip()))


def _reason(exc: BaseException) -> str:
    text = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
    return text or type(exc).__name__


def _database() -> str:
    """The database the command was given, for a message (the one settings name)."""
    try:
        settings = load_settings()
    except CallvaultError:
        return "database"
    if settings.database_url:
        return f"database {url_without_password(settings.database_url)}"
    return f"embedded database in {settings.pg_dir}"


def _store_named() -> str:
    try:
        settings = load_settings()
    except CallvaultError:
        return "the store"
    if not settings.s3_bucket:
        return f"local store in {settings.home / 'objects'}"
    return f"S3 bucket {settings.s3_bucket} at {settings.s3_endpoint_url or 'AWS'}"


def _describe(exc: Exception) -> str:
    """What failed and why, naming the file, database or store it is about."""
    import asyncpg

    from service.storage import StorageError

    if isinstance(exc, StorageError):
        where = _store_named()
        return exc.message if where in exc.message else f"{where}: {exc.message}"
    if isinstance(exc, CallvaultError) and not isinstance(exc, InternalError):
        return exc.message
    if isinstance(exc, OSError) and exc.filename is not None:
        what = os.fsdecode(exc.filename) if not isinstance(exc.filename, int) else "a file"
        if exc.filename2 is not None:
            what += f" -> {os.fsdecode(exc.filename2)}"
        return f"{what}: {_reason(exc)}"
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return f"{_database()}: {_reason(exc)}"
    return f"{type(exc).__name__}: {_reason(exc)}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # One line naming what failed, never a traceback (unless asked for, to debug callvault)
        if os.environ.get("CALLVAULT_LOG_LEVEL", "").strip().upper() == "DEBUG":
            traceback.print_exc()
        print(f"callvault: error: {_one_line(_describe(exc))}", file=sys.stderr)
        return 2 if isinstance(exc, CallvaultError) and exc.code == "config_error" else 1
    return code


if __name__ == "__main__":
    sys.exit(main())
