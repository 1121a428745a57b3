"""``callvault receipt CALL_ID | verify FILE --public-key KEY | key [rotate]`` (registered from
service/cli). ``verify`` touches no database and reads no settings: it runs anywhere."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from service.errors import CallvaultError

USAGE = """\
  callvault receipt CALL_ID [--tenant ID] [--out FILE]   the call's signed receipt (JSON)
  callvault receipt verify FILE --public-key KEY         check one offline (no database)
  callvault receipt key [--tenant ID]                    the tenant's current public key
  callvault receipt key rotate [--tenant ID]             retire it and make the next"""


def cmd_receipt(args: argparse.Namespace) -> int:
    target, rest = args.target, list(args.rest)
    if target == "verify":
        if len(rest) != 1:
            raise CallvaultError("receipt verify: give one FILE")
        return _verify(rest[0], args.public_key)
    if target == "key":
        if rest not in ([], ["rotate"]):
            raise CallvaultError("receipt key: the only action is rotate")
        return _key(args.tenant, rotate=rest == ["rotate"])
    if rest:
        raise CallvaultError(f"receipt: unexpected {' '.join(rest)!r}")
    return _receipt(target, args.tenant, args.out)


def _verify(file: str, key: str | None) -> int:
    from service.receipts.verify import ReceiptInvalid, verify

    if not key:
        raise CallvaultError("receipt verify: --public-key KEY is required (base64, 32 bytes)")
    data = Path(file).read_bytes()
    try:
        lines = verify(data, key)
    except ReceiptInvalid as exc:
        raise CallvaultError(f"receipt does not verify: {exc}") from None
    for line in lines:
        print(f"ok  {line}")
    print("receipt verified")
    return 0


def _key(tenant: str, *, rotate: bool) -> int:
    from service.cli.common import actor, on_connection, phone_vault, settings_for
    from service.observability import audit
    from service.receipts import keys

    settings = settings_for(database=True)

    async def work(conn: Any) -> int:
        await _known_tenant(conn, tenant)
        vault = phone_vault(settings)
        if rotate:
            async with conn.transaction():
                signer = await keys.rotate(conn, vault, tenant)
                await audit.record(
                    conn, actor(), "receipt_key_rotated", "receipt_key", str(signer.key_id), {}
                )
        else:
            signer = await keys.signer(conn, vault, tenant)
        print(keys.public_b64(signer.public_key))  # alone on its line
        return 0

    return on_connection(work, tenant=tenant, settings=settings)


def _receipt(call: str, tenant: str, out: str | None) -> int:
    from service.cli.common import actor, on_connection, phone_vault, settings_for, uuid_arg
    from service.observability import audit
    from service.receipts import build, canonical

    call_id = uuid_arg(call, "CALL_ID")
    settings = settings_for(database=True)

    async def work(conn: Any) -> int:
        await _known_tenant(conn, tenant)
        receipt = await build(
            conn, phone_vault(settings), tenant, call_id, seal_interval_s=settings.seal_interval_s
        )
        await audit.record(conn, actor(), "receipt_issued", "call", str(call_id), {})
        data = canonical(receipt) + b"\n"
        if out:
            await asyncio.to_thread(Path(out).write_bytes, data)
            print(f"wrote {out} ({receipt['coverage']['status']})")
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        return 0

    return on_connection(work, tenant=tenant, settings=settings)


async def _known_tenant(conn: Any, tenant: str) -> None:
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)", tenant):
        raise CallvaultError(f"--tenant: no tenant {tenant!r}")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "receipt",
        help="consent receipts: a call's signed proof, offline verification, signing keys",
        usage="callvault receipt CALL_ID | verify FILE --public-key KEY | key [rotate] "
        "[--tenant ID]",
        description="Consent receipts.\n\n" + USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="CALL_ID|verify|key")
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--tenant", default="default", help="the tenant (default: default)")
    p.add_argument("--out", help="write the receipt to this file instead of stdout")
    p.add_argument("--public-key", help="verify: the tenant's public key (base64)")
    p.set_defaults(func=cmd_receipt)
