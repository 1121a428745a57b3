"""``callvault tenant create|list|show|apply|export|offboard``: the operator's commands for
tenants (registered by service/cli). Each change is written with its audit entry in one
transaction; export and offboard act as the tenant itself (its rows, its audit trail)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from service.db.tenancy import ALL  # tenants are the platform's: its actions audit in no tenant


def cmd_create(args: argparse.Namespace) -> int:
    from service.cli.common import actor, on_connection
    from service.observability import audit
    from service.receipts import keys as receipt_keys
    from service.tenants import store

    vault = _receipt_vault()

    async def work(conn: Any) -> int:
        async with conn.transaction():
            row = await store.create(conn, args.id, args.name)
            if vault is not None:  # its receipt signing key (else made on first use)
                await receipt_keys.create(conn, vault, row["id"])
            await audit.record(
                conn, actor(), "tenant_created", "tenant", row["id"], {"name": row["name"]}
            )
        print(f"created tenant {row['id']}")
        return 0

    return on_connection(work, tenant=ALL)


def _receipt_vault() -> Any:
    """The vault that encrypts receipt keys, when this command has the secret key; None when
    it does not (the tenant's key is then made on first use)."""
    from service.cli.common import phone_vault, settings_for
    from service.errors import ConfigError

    try:
        return phone_vault(settings_for(database=True))
    except ConfigError:
        return None


def cmd_list(args: argparse.Namespace) -> int:
    from service.cli.common import on_connection, shown
    from service.tenants import store

    async def work(conn: Any) -> int:
        for t in await store.list_all(conn):
            storage = "own bucket" if t["own_storage"] else "shared bucket"
            print(
                f"{t['id']:<40} {t['queues']:>3} queues {t['numbers']:>5} numbers "
                f"{t['accounts']:>3} accounts  {storage:<13}  {shown(t['name'])}"
            )
        return 0

    return on_connection(work, tenant=ALL)


def cmd_show(args: argparse.Namespace) -> int:
    from service.cli.common import on_connection, shown
    from service.errors import CallvaultError
    from service.tenants import store

    async def work(conn: Any) -> int:
        found = (await store.load(conn, [args.id])).get(args.id)
        if found is None:
            raise CallvaultError(f"no tenant {shown(args.id)!r}")
        view = store.as_json(found)
        if args.json:
            print(json.dumps(view, indent=2, ensure_ascii=False))
            return 0
        print(f"tenant {found.id}: {shown(found.name)}")
        if found.id == "default":
            print("  policy: from the environment and CALLVAULT_CONFIG")
        for key, value in sorted(found.policy.items()):
            print(f"  {key} = {json.dumps(value, ensure_ascii=False)}")
        for name, policy in sorted(found.queues.items()):
            print(f"  queue {name} {json.dumps(policy, ensure_ascii=False)}")
        for number, entry in sorted(found.numbers.items()):
            queue = f" queue={entry['queue']}" if entry["queue"] else ""
            print(f"  number {number}{queue} {json.dumps(entry['policy'], ensure_ascii=False)}")
        for account in view["accounts"]:
            print(f"  {account['platform']} {account['account_id']}")
            for key, value in account["settings"].items():
                print(f"    {key} = {shown(value)}")
            for key, ref in account["secrets"].items():
                state = "resolves" if ref["resolves"] else "DOES NOT RESOLVE"
                print(f"    {key} = {shown(ref['ref'])} ({state})")
        storage = view["storage"]
        if storage is None and found.id == "default":
            print("  storage: the shared bucket (CALLVAULT_S3_*), keys without a prefix")
        elif storage is None:
            print(f"  storage: the shared bucket under tenants/{found.id}/")
        else:
            print(f"  storage: bucket {storage['bucket']} sse {storage['sse']}")
            for key in ("endpoint_url", "region", "kms_key_id"):
                if key in storage:
                    print(f"    {key} = {shown(storage[key])}")
            for key, ref in storage["credentials"].items():
                state = "resolves" if ref["resolves"] else "DOES NOT RESOLVE"
                print(f"    {key} = {shown(ref['ref'])} ({state})")
        data_keys = view["data_keys"]
        if data_keys is None:
            print("  data keys: wrapped by the key derived from CALLVAULT_SECRET_KEY")
        else:
            print(f"  data keys: wrapped by KMS key {shown(data_keys['kms_key_id'])}")
            for key in ("endpoint_url", "region"):
                if key in data_keys:
                    print(f"    {key} = {shown(data_keys[key])}")
            for key, ref in data_keys["credentials"].items():
                state = "resolves" if ref["resolves"] else "DOES NOT RESOLVE"
                print(f"    {key} = {shown(ref['ref'])} ({state})")
        return 0

    return on_connection(work, tenant=ALL)


def cmd_apply(args: argparse.Namespace) -> int:
    from service.cli.common import actor, on_connection, settings_for
    from service.tenants import apply, model

    settings = settings_for(database=True, secrets=False)
    specs = model.parse_file(model.read_file(Path(args.file)))

    async def work(conn: Any) -> int:
        async with conn.transaction():
            plan = await apply.plan_and_apply(
                conn, specs, actor(), dry_run=args.dry_run, reserved_numbers=settings.numbers
            )
        if plan.empty:
            print("no changes: the tenants are as the file says")
            return 0
        for line in plan.lines():
            print(line)
        count = sum(1 for lines in plan.changes.values() if lines)
        if args.dry_run:
            print(f"dry run: {count} tenant(s) would change; nothing written")
        else:
            print(f"applied: {count} tenant(s) changed")
        return 0

    return on_connection(work, tenant=ALL, settings=settings)


def _print_export(report: Any) -> None:
    print(
        f"exported {report.recordings} recording(s) ({report.fetched} fetched, "
        f"{report.skipped} already complete), {report.bytes} bytes, "
        f"{report.shredded} shredded (listed in the manifest, not exported), "
        f"{report.ledger_events} ledger event(s), {report.seals} seal(s) to {report.target}"
    )


def cmd_export(args: argparse.Namespace) -> int:
    from service.cli.common import object_stores, on_connection, settings_for
    from service.tenants.export import export, target_of

    settings = settings_for(database=True, secrets=False)
    out = target_of(args.out, settings)

    async def work(conn: Any) -> int:
        stores = object_stores(settings)
        try:
            report = await export(
                conn, stores, args.id, out, settings=settings, sealed_out=args.sealed
            )
        finally:
            await stores.close()
        _print_export(report)
        return 0

    # as the tenant: row-level security shows exactly its rows
    return on_connection(work, tenant=args.id, settings=settings)


def cmd_offboard(args: argparse.Namespace) -> int:
    from service.cli.common import actor, object_stores, on_connection, settings_for
    from service.tenants.export import target_of
    from service.tenants.offboard import check, offboard

    settings = settings_for(database=True, secrets=False)
    out = None if args.skip_export else target_of(args.out, settings)

    async def work(conn: Any) -> int:
        await check(conn, args.id)  # refused before anything is exported or touched
        stores = object_stores(settings)
        try:
            report = await offboard(
                conn, stores, args.id, actor=actor(), out=out, settings=settings
            )
        finally:
            await stores.close()
        if report.export is not None:
            _print_export(report.export)
        deleted = ", ".join(f"{k} {v}" for k, v in report.deleted.items())
        print(
            f"offboarded tenant {args.id}: {report.calls} call(s) erased, "
            f"{report.bundles} bundle(s) deleted, rows deleted: {deleted}; "
            f"{report.tokens_revoked} token(s) revoked; ledger and seals kept"
        )
        return 0

    return on_connection(work, tenant=args.id, settings=settings)


def add_parser(sub: Any) -> None:
    tenant_p = sub.add_parser(
        "tenant", help="tenants (a BPO's clients): create, list, show, apply, export, offboard"
    )
    tenant_sub = tenant_p.add_subparsers(dest="tenant_command", required=True, metavar="ACTION")
    p = tenant_sub.add_parser("create", help="create an empty tenant")
    p.add_argument("id", help="slug: lower-case letters, digits and '-'")
    p.add_argument("--name", required=True)
    p.set_defaults(func=cmd_create)
    p = tenant_sub.add_parser("list", help="list tenants")
    p.set_defaults(func=cmd_list)
    p = tenant_sub.add_parser("show", help="a tenant's configuration (secrets as references)")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)
    p = tenant_sub.add_parser(
        "apply", help="make the tenants a TOML file names exactly as it says (all or nothing)"
    )
    p.add_argument("file")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.set_defaults(func=cmd_apply)
    p = tenant_sub.add_parser(
        "export",
        help="write every recording, a manifest of SHA-256s and the ledger to a folder "
        "(resumable: a rerun skips the files already complete)",
    )
    p.add_argument("id")
    p.add_argument("--out", required=True, metavar="DIR|s3://BUCKET/PREFIX")
    p.add_argument(
        "--sealed",
        action="store_true",
        help="recordings as stored (encrypted) with each one's data key wrapped by the "
        "tenant's own KMS key, instead of plaintext audio (tenants with a KMS key only)",
    )
    p.set_defaults(func=cmd_export)
    p = tenant_sub.add_parser(
        "offboard",
        help="export, then erase all of a tenant's call data (ledger and seals kept); "
        "refused while a hold is active",
    )
    p.add_argument("id")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR|s3://BUCKET/PREFIX", help="export here first")
    target.add_argument(
        "--skip-export", action="store_true", help="erase without exporting (say so explicitly)"
    )
    p.set_defaults(func=cmd_offboard)
