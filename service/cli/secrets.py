"""``callvault secrets rotate``: the key that protects stored phone numbers."""

from __future__ import annotations

import argparse
from typing import Any

from service.cli.common import on_connection, settings_for
from service.errors import CallvaultError


def cmd_secrets_rotate(args: argparse.Namespace) -> int:
    from service.personal.numbers import PhoneVault
    from service.personal.rekey import rotate

    settings = settings_for(database=True)
    if args.data_keys:
        # a tenant that named another KMS key, or gained or dropped one: only the recordings'
        # data keys move; the secret stays
        assert settings.secret_key
        only = PhoneVault(settings.secret_key, settings.previous_secret_key)

        async def data_keys_only(conn: Any) -> int:
            from service.storage import recording_keys

            print(f"re-wrapped {await recording_keys.rewrap(conn, only)} recording data keys")
            return 0

        return on_connection(data_keys_only, tenant="*", settings=settings)
    if not settings.previous_secret_key:
        raise CallvaultError(
            "CALLVAULT_PREVIOUS_SECRET_KEY: set it to the old key (and CALLVAULT_SECRET_KEY to "
            "the new one) to rotate"
        )
    assert settings.secret_key
    vault = PhoneVault(settings.secret_key, settings.previous_secret_key)

    async def work(conn: Any) -> int:
        from service.receipts import keys
        from service.storage import recording_keys

        report = await rotate(conn, vault)
        receipt_keys = await keys.rekey(conn, vault)
        # each recording's data key re-wrapped under the tenant's new key; objects untouched
        data_keys = await recording_keys.rewrap(conn, vault)
        print(
            f"re-keyed {report.calls} calls and {report.do_not_record} do-not-record entries"
            + (f", {report.holds} holds" if report.holds else "")
            + (f", {report.requests} requests" if report.requests else "")
            + (f", {receipt_keys} receipt signing keys" if receipt_keys else "")
            + (f", {data_keys} recording data keys" if data_keys else "")
        )
        return 0

    return on_connection(work, tenant="*", settings=settings)


def add_parser(sub: Any) -> None:
    secrets_p = sub.add_parser("secrets", help="the key that protects stored phone numbers")
    secrets_sub = secrets_p.add_subparsers(dest="secrets_command", required=True, metavar="ACTION")
    p = secrets_sub.add_parser(
        "rotate",
        help="re-encrypt stored numbers under CALLVAULT_SECRET_KEY (the previous key "
        "in CALLVAULT_PREVIOUS_SECRET_KEY), and re-wrap recording data keys",
    )
    p.add_argument(
        "--data-keys",
        action="store_true",
        help="only re-wrap recording data keys under what each tenant configures now (its KMS "
        "key, or the key derived from the secret); no previous key needed",
    )
    p.set_defaults(func=cmd_secrets_rotate)
