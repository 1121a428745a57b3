"""The ``callvault`` command. Every command exits non-zero with a one-line reason on error."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import traceback
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from service.config import Settings, load_settings, with_generated_secrets
from service.errors import CallvaultError
from service.redact import redact_urls, url_without_password


def _settings(*, database: bool, secrets: bool = True) -> Settings:
    """Settings with the secrets (generated ones in embedded mode) and, if asked, the database
    resolved. Commands that never touch personal data don't ask for secrets."""
    settings = load_settings()
    if secrets:
        settings = with_generated_secrets(settings)
    if database and not settings.database_url:
        from service.db.server import database_url

        settings = replace(settings, database_url=database_url(settings))
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from service import listener, logs
    from service.app import create_app
    from service.demo import with_standin
    from service.worker_cli import with_role

    settings = with_role(load_settings(), args)
    logs.setup(settings.log_level)
    resolved = with_role(_settings(database=True), args)
    embedded = not settings.database_url
    if embedded:
        # migrations as the embedded superuser; the service as a role row-level security binds
        assert resolved.database_url
        resolved = replace(
            resolved, database_url=asyncio.run(_embedded_service_url(resolved.database_url))
        )
    settings = with_standin(settings, resolved)  # demo mode: service/demo.py
    listener.run(
        create_app(settings, apply_migrations=not embedded),
        host=settings.host,
        port=settings.port,
        header_timeout_s=settings.header_timeout_s,
        max_connections=settings.max_connections,
        access_log_class=logs.AccessLogger,
        shutdown_timeout_s=settings.shutdown_timeout_s,
        on_listening=lambda limit: logging.getLogger("service").info(
            "callvault listening",
            extra={
                "url": f"http://{settings.host}:{settings.port}",
                "public_url": settings.public_url,
                "max_connections": limit,
                "role": settings.role.value,
            },
        ),
    )
    return 0


async def _embedded_service_url(superuser_url: str) -> str:
    from service.db import roles
    from service.db.migrations import migrate
    from service.db.pool import connect

    conn = await connect(superuser_url)
    try:
        for m in await migrate(conn):
            logging.getLogger("service").info("applied migration %04d_%s", m.version, m.name)
        await roles.ensure_service_role(conn)
    finally:
        await conn.close()
    return roles.url_for_role(superuser_url)


async def _with_connection(
    settings: Settings, work: Callable[[Any], Coroutine[Any, Any, int]], *, tenant: str
) -> int:
    """``work`` on one connection acting for ``tenant`` (``--tenant``; ``'*'`` for the few
    commands that work across tenants: migrate, jobs, secrets rotate). Work for one tenant runs
    as a role row-level security binds: ``callvault.tenant`` alone confines nothing for a
    superuser (the embedded database's URL), so that takes on the service's role."""
    from service.db import roles, tenancy
    from service.db.pool import connect

    assert settings.database_url
    conn = await connect(settings.database_url)
    try:
        if tenant != tenancy.ALL:
            await roles.bind_to_rls(conn, allow_bypass=settings.allow_rls_bypass)
        await tenancy.set_tenant(conn, tenant)
        return await work(conn)
    finally:
        await conn.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    from service.db import roles
    from service.db.migrations import migrate

    embedded = not load_settings().database_url

    async def work(conn: Any) -> int:
        applied = await migrate(conn)
        if embedded:  # the role tenant-scoped commands (and serve) act as, as serve makes it
            await roles.ensure_service_role(conn)
        for m in applied:
            print(f"applied {m.version:04d}_{m.name}")
        if not applied:
            print("database is up to date")
        return 0

    return asyncio.run(_with_connection(_settings(database=True, secrets=False), work, tenant="*"))


def cmd_prompts_build(args: argparse.Namespace) -> int:
    from prompts.render import build

    settings = load_settings()
    out = Path(args.out) if args.out else settings.prompts_dir
    manifest = build(out)
    for entry in manifest["prompts"]:
        for fmt, info in entry["files"].items():
            print(
                f"{entry['id']}/{entry['version']}.{fmt}  {info['bytes']:>7} bytes  "
                f"{info['duration_ms'] / 1000:5.1f} s  sha256 {info['sha256']}"
            )
    print(f"wrote {out / 'manifest.json'}")
    return 0


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from service import ledger

    call_id = None
    if args.call:
        try:
            call_id = uuid.UUID(args.call)
        except ValueError:
            raise CallvaultError(f"--call: not a call id: {args.call!r}") from None

    async def work(conn: Any) -> int:
        if args.tenant != "*" and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)", args.tenant
        ):
            raise CallvaultError(f"--tenant: no tenant {args.tenant!r}")
        report = await ledger.verify(conn, call_id)
        if args.json:
            print(json.dumps(report.as_json()))
        else:
            print(
                f"verified {report.events} events in {report.calls} calls"
                + (f" and {report.seals} seals" if report.seals else "")
            )
            if len(report.tenant_seals) > 1:
                for tenant, n in sorted(report.tenant_seals.items()):
                    print(f"tenant {_shown(tenant)}: {n} seals, chained on their own")
        if not report.ok:
            for item in report.breaks[:20]:
                print(f"BROKEN: {item}", file=sys.stderr)
            print(f"ledger broken: first at {report.breaks[0]}", file=sys.stderr)
            return 1
        return 0

    return asyncio.run(
        _with_connection(_settings(database=True, secrets=False), work, tenant=args.tenant)
    )


def cmd_ledger_seal(args: argparse.Namespace) -> int:
    from service.ledger import seals

    async def work(conn: Any) -> int:
        seal_id = await seals.seal(conn)
        print(f"sealed: seal {seal_id}" if seal_id else "nothing new to seal (or sealing now)")
        return 0

    return asyncio.run(
        _with_connection(_settings(database=True, secrets=False), work, tenant=args.tenant)
    )


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from service import jobs

    async def work(conn: Any) -> int:
        counts = await jobs.stats(conn)
        summary = ", ".join(f"{state} {n}" for state, (n, _) in sorted(counts.items()))
        print(f"jobs: {summary or 'none'}")
        rows = await conn.fetch(jobs.Q["list_by_state"], args.state, args.limit)
        for row in rows:
            payload = row["payload"]
            what = payload.get("recording_sid", "") if isinstance(payload, dict) else ""
            print(
                f"{row['id']:>8}  {row['kind']:<10} {what:<34} attempts {row['attempts']}/"
                f"{row['max_attempts']}  updated {row['updated_at']:%Y-%m-%d %H:%M:%S}  "
                f"{_shown((row['last_error'] or '')[:120])}"
            )
        return 0

    return asyncio.run(_with_connection(_settings(database=True, secrets=False), work, tenant="*"))


def cmd_jobs_retry(args: argparse.Namespace) -> int:
    from service import jobs

    async def work(conn: Any) -> int:
        if await conn.fetchval(jobs.Q["requeue_dead"], args.id) is None:
            raise CallvaultError(f"no dead job {args.id}")
        print(f"job {args.id} queued again")
        return 0

    return asyncio.run(_with_connection(_settings(database=True, secrets=False), work, tenant="*"))


def cmd_secrets_rotate(args: argparse.Namespace) -> int:
    from service.personal_data import PhoneVault
    from service.rekey import rotate

    settings = _settings(database=True)
    if not settings.previous_secret_key:
        raise CallvaultError(
            "CALLVAULT_PREVIOUS_SECRET_KEY: set it to the old key (and CALLVAULT_SECRET_KEY to "
            "the new one) to rotate"
        )
    assert settings.secret_key
    vault = PhoneVault(settings.secret_key, settings.previous_secret_key)

    async def work(conn: Any) -> int:
        from service import recording_keys
        from service.receipts import keys

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

    return asyncio.run(_with_connection(settings, work, tenant="*"))


def cmd_recordings_encrypt(args: argparse.Namespace) -> int:
    from service.reseal import encrypt_all

    if not args.all:
        raise CallvaultError("--all: say that every stored recording is meant")
    settings = _settings(database=True)

    async def work(conn: Any) -> int:
        stores = _stores(settings)
        try:
            report = await encrypt_all(conn, _vault(settings), stores, settings.home / "tmp")
        finally:
            await stores.close()
        print(
            f"sealed {report.sealed} recordings, {report.already} already sealed"
            + (f", {report.missing} missing from the store" if report.missing else "")
            + (f", {report.skipped} purged or erased meanwhile" if report.skipped else "")
            + (f", {len(report.failed)} failed" if report.failed else "")
        )
        for recording_id, why in report.failed.items():
            print(f"{recording_id}: {why}", file=sys.stderr)
        return 1 if report.failed else 0

    return asyncio.run(_with_connection(settings, work, tenant="*"))


def cmd_calls_mark_outbound(args: argparse.Namespace) -> int:
    from service.consent.legacy import mark_outbound
    from service.personal_data import mask_phone, parse_e164

    # Anything else would match no call and report "marked 0" as if the repair were done.
    if parse_e164(args.centre_number) is None:
        raise CallvaultError("--from: not an E.164 number like +842873001234")
    settings = _settings(database=True)

    async def work(conn: Any) -> int:
        n = await mark_outbound(conn, _vault(settings), args.centre_number, actor=_actor())
        print(f"marked {n} calls from {mask_phone(args.centre_number)} as outbound")
        return 0

    return asyncio.run(_with_connection(settings, work, tenant=args.tenant))


def cmd_calls_rehash(args: argparse.Namespace) -> int:
    from service.db import roles
    from service.rehash import RehashReport, rehash_every_tenant

    settings = _settings(database=True)

    async def work(conn: Any) -> int:
        # tenant by tenant, each confined by row-level security (as serve's pass is)
        await roles.bind_to_rls(conn, allow_bypass=settings.allow_rls_bypass)
        reports = await rehash_every_tenant(conn, _vault(settings), _actor())
        total = RehashReport.total(reports.values())
        print(
            f"re-hashed {total.calls} calls, {total.do_not_record} do-not-record entries, "
            f"{total.holds} holds and {total.requests} requests in {len(reports)} tenant(s)"
        )
        if total.unreadable:
            print(f"{total.unreadable} numbers sealed under another key: left as they are")
        return 0

    return asyncio.run(_with_connection(settings, work, tenant="*"))


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _vault(settings: Settings) -> Any:
    from service.personal_data import PhoneVault

    assert settings.secret_key
    return PhoneVault(settings.secret_key, settings.previous_secret_key)


def _stores(settings: Settings, reader: Any = None) -> Any:
    """Every tenant's object store (:class:`~service.storage.registry.StoreRegistry`)."""
    from service.storage.registry import StoreRegistry

    return StoreRegistry.from_settings(settings, reader=reader)


async def issue_token(conn: Any, name: str, role: str) -> str:
    """A new token and its audit entry, in one transaction (``token create``, ``demo``)."""
    from service import audit, auth

    async with conn.transaction():
        token, row = await auth.create_token(conn, name, role, _actor())
        await audit.record(
            conn,
            _actor(),
            "token_created",
            "token",
            str(row["id"]),
            {"name": row["name"], "role": row["role"]},
        )
    return token


def cmd_token_create(args: argparse.Namespace) -> int:
    async def work(conn: Any) -> int:
        print(await issue_token(conn, args.name, args.role))  # alone on its line, once
        return 0

    return asyncio.run(
        _with_connection(_settings(database=True, secrets=False), work, tenant=args.tenant)
    )


def _shown(text: str) -> str:
    """Text from the database as it may be printed to a terminal: control characters, ANSI
    escapes, invisible and direction-changing characters written as Python escapes (``\\x1b``,
    ``\\n``, ``\\u202e``), backslashes doubled so an escape cannot be faked."""
    return "".join(
        "\\\\" if ch == "\\" else ch if ch.isprintable() else repr(ch)[1:-1] for ch in text
    )


def cmd_token_list(args: argparse.Namespace) -> int:
    from service import auth

    async def work(conn: Any) -> int:
        for t in await auth.list_tokens(conn):
            state = "revoked" if t["revoked"] else "active"
            tenant = _shown(t["tenant"]) if t["tenant"] is not None else "*"
            print(f"{t['id']}  {t['role']:<11} {state:<8} {tenant:<12} {_shown(t['name'])}")
        return 0

    return asyncio.run(
        _with_connection(_settings(database=True, secrets=False), work, tenant=args.tenant)
    )


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from service import audit, auth

    token_id = _uuid_arg(args.id, "id")

    async def work(conn: Any) -> int:
        async with conn.transaction():
            if not await auth.revoke_token(conn, token_id):
                raise CallvaultError(f"no active token {token_id}")
            await audit.record(conn, _actor(), "token_revoked", "token", str(token_id), {})
        print(f"revoked {token_id}")
        return 0

    return asyncio.run(
        _with_connection(_settings(database=True, secrets=False), work, tenant=args.tenant)
    )


def _uuid_arg(raw: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise CallvaultError(f"{name}: not an id: {raw!r}") from None


def cmd_purge(args: argparse.Namespace) -> int:
    from retention import purge
    from service.db import tenancy
    from service.db.pool import create_pool

    settings = _settings(database=True, secrets=False)

    async def run() -> int:
        assert settings.database_url
        pool = await create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            if args.dry_run:
                with tenancy.as_tenant(tenancy.ALL):  # what any tenant's purge would take
                    async with pool.acquire() as conn:
                        for line in await purge.dry_run_report(conn, limit=args.limit):
                            print(line)
                return 0
            stores = _stores(settings, reader=pool.acquire)
            try:
                report = await purge.purge_once(pool, stores)
            finally:
                await stores.close()
            print(
                f"purged {report.purged}, kept by holds {report.held}, "
                f"refused by the store {len(report.failed)}"
            )
            for rid, why in list(report.failed.items())[:20]:
                print(f"REFUSED {rid}: {why}", file=sys.stderr)
            if report.bundles or report.bundles_failed:
                print(
                    f"expired access bundles removed {report.bundles}, "
                    f"refused by the store {len(report.bundles_failed)}"
                )
            return 1 if report.failed or report.bundles_failed else 0
        finally:
            await pool.close()

    return asyncio.run(run())


def cmd_hold_place(args: argparse.Namespace) -> int:
    from retention import holds

    if (args.call is None) == (args.phone is None):
        raise CallvaultError("give exactly one of --call ID or --phone E164")
    settings = _settings(database=True)
    call_id = _uuid_arg(args.call, "--call") if args.call else None

    async def work(conn: Any) -> int:
        placed = await holds.place(
            conn,
            _vault(settings),
            _actor(),
            call_id=call_id,
            phone=args.phone,
            reason=args.reason,
            case_ref=args.case_ref,
        )
        print(f"hold {placed.id}: {len(placed.held_recordings)} recording(s) held")
        if placed.already_gone:
            print(f"already purged or erased: {', '.join(placed.already_gone)}")
        for e in placed.already_erased:
            print(f"call {e['call_id']} erased at {e['erased_at']} by request {e['request_id']}")
        return 0

    return asyncio.run(_with_connection(settings, work, tenant=args.tenant))


def cmd_hold_release(args: argparse.Namespace) -> int:
    from retention import holds

    settings = _settings(database=True)
    hold_id = _uuid_arg(args.id, "id")

    async def work(conn: Any) -> int:
        await holds.release(conn, _vault(settings), hold_id, _actor())
        print(f"released {hold_id}")
        return 0

    return asyncio.run(_with_connection(settings, work, tenant=args.tenant))


def cmd_hold_list(args: argparse.Namespace) -> int:
    from retention import holds

    settings = _settings(database=True)
    vault = _vault(settings)

    async def work(conn: Any) -> int:
        for h in await holds.list_holds(conn, vault, include_released=args.all, limit=1000):
            target = f"call {h['call_id']}" if h["call_id"] else h["phone"] or "an erased number"
            state = "active" if h["active"] else f"released {h['released_at']}"
            case = _shown(h["case_ref"] or "-")
            print(f"{h['id']}  on {target}  {state}  case {case}: {_shown(h['reason'])}")
        return 0

    return asyncio.run(_with_connection(settings, work, tenant=args.tenant))


def _received_at(raw: str | None) -> Any:
    from service.untrusted import parse_timestamp

    if raw is None:
        return None
    parsed = parse_timestamp(raw)
    if parsed is None:
        raise CallvaultError(
            f"--received-at: not an ISO 8601 date-time with a zone (like "
            f"2027-02-03T09:30:00+07:00): {raw!r}"
        )
    return parsed


def cmd_dsar(args: argparse.Namespace) -> int:
    from retention import clock, requests
    from service.jobs import Defer

    settings = _settings(database=True)
    vault = _vault(settings)
    out = Path(args.out) if getattr(args, "out", None) else None
    # Checked before the request exists: a bundle built for nowhere would otherwise be named
    # only as a failure of the object store, after the request had completed.
    if out is not None and not out.parent.is_dir():
        raise CallvaultError(f"--out {out}: no folder {out.parent}")
    if out is not None and out.is_dir():
        raise CallvaultError(f"--out {out}: is a folder; give the zip file's name")
    received_at = _received_at(args.received_at)
    call_ids = [_uuid_arg(c, "--call") for c in getattr(args, "call", None) or []]

    async def work(conn: Any) -> int:
        request_id = await requests.create(
            conn,
            vault,
            kind=args.kind,
            phone=args.phone,
            actor=_actor(),
            clock_defaults=clock.for_settings(settings),
            received_at=received_at,
            call_ids=call_ids,
            statement=getattr(args, "statement", None),
            unlink=bool(getattr(args, "unlink", False)),
            channel=args.channel,
        )
        if args.kind == "restrict":
            row = await requests.get(conn, request_id)
            print(f"request {request_id}: {row['status']} (until lifted: dsar lift {request_id})")
            return 0
        stores = _stores(settings)
        try:
            try:
                # carried out here and now; the queued job makes sure it finishes even if not
                await requests.run(
                    conn,
                    vault,
                    stores,
                    request_id,
                    settings.home / "tmp",
                    retry_s=settings.purge_interval_s,
                    bundle_ttl_s=settings.bundle_ttl_s,
                )
            except Defer as exc:
                print(f"request {request_id}: waiting: {exc.reason}")
                return 0
            row = await requests.get(conn, request_id)
            print(f"request {request_id}: {row['status']} (due {row['due_at'].isoformat()})")
            if args.kind == "access":
                # writing the bundle out is an export: a restriction in force forbids it
                await requests.check_subject_not_restricted(conn, request_id)
                target = out or Path(f"callvault-access-{request_id}.zip")
                store = await stores.for_object(row["tenant_id"], row["bundle_store"], conn)
                await store.download_to(row["bundle_key"], target)
                print(f"wrote {target}")
        finally:
            await stores.close()
        return 0

    return asyncio.run(_with_connection(settings, work, tenant=args.tenant))


def _left(seconds: int | None) -> str:
    """``3d 4h left`` / ``overdue by 5h`` / ``-``."""
    if seconds is None:
        return "-"
    span, parts = abs(seconds), list[str]()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if span >= size or (unit == "m" and not parts):
            parts.append(f"{span // size}{unit}")
            span %= size
        if len(parts) == 2:
            break
    text = " ".join(parts)
    return f"overdue by {text}" if seconds < 0 else f"{text} left"


def _request_line(item: dict[str, Any]) -> str:
    left = item["time_left"]
    ack = (
        f"acknowledge by {item['acknowledge_by']} ({_left(left['acknowledge_s'])})"
        if left["acknowledge_s"] is not None
        else "acknowledged"
        if item["acknowledged_at"]
        else "no acknowledgement due"
    )
    due = f"due {item['due_at']} ({_left(left['complete_s'])})"
    if left["complete_s"] is None:
        due = item["status"]
    extended = f", extended {item['extension']['days']}d" if item["extension"] else ""
    return f"{item['id']}  {item['kind']:<8} {item['status']:<16} {ack}; {due}{extended}"


def cmd_dsar_list(args: argparse.Namespace) -> int:
    from retention import clock, requests
    from service.config import parse_duration

    due_within = parse_duration("--due-within", args.due_within) if args.due_within else None
    if due_within is not None and due_within > requests.MAX_DUE_WITHIN_S:
        raise CallvaultError(f"--due-within: at most 99999w, got {args.due_within!r}")
    if args.status == "open":
        statuses: list[str] | None = [s for s in requests.STATUSES if s not in clock.CLOSED]
    else:
        statuses = None if args.status == "all" else [args.status]

    async def work(conn: Any) -> int:
        rows = await requests.list_requests(
            conn, statuses=statuses, due_within_s=due_within, limit=args.limit
        )
        for row in rows:
            print(_request_line(requests.request_json(row)))
        return 0

    return asyncio.run(
        _with_connection(_settings(database=True, secrets=False), work, tenant=args.tenant)
    )


def cmd_dsar_action(args: argparse.Namespace) -> int:
    from retention import clock, requests

    settings = _settings(database=True, secrets=False)
    request_id = _uuid_arg(args.id, "id")

    async def work(conn: Any) -> int:
        if args.action == "acknowledge":
            await requests.acknowledge(conn, request_id, _actor())
        elif args.action == "extend":
            await requests.extend(
                conn,
                request_id,
                _actor(),
                days=args.days,
                reason=args.reason,
                clock_defaults=clock.for_settings(settings),
            )
        elif args.action == "reject":
            await requests.reject(conn, request_id, _actor(), reason=args.reason)
        elif args.action == "lift":
            await requests.lift(conn, request_id, _actor())
        print(_request_line(requests.request_json(await requests.get(conn, request_id))))
        return 0

    return asyncio.run(_with_connection(settings, work, tenant=args.tenant))


def cmd_simulate(args: argparse.Namespace) -> int:
    import aiohttp

    from service.simulate import Caller, CallTrace, FakeTwilio, summary

    settings = _settings(database=False)
    try:
        behaviour = Caller.parse(args.behaviour)
    except ValueError as exc:
        raise CallvaultError(f"--behaviour: {exc}") from None
    public_url = (args.url or settings.public_url).rstrip("/")

    async def twilio(session: aiohttp.ClientSession) -> CallTrace:
        voice_path = "/telephony/twilio/voice" + (f"?queue={args.queue}" if args.queue else "")
        fake = FakeTwilio(
            session,
            public_url,
            account_sid=settings.twilio_account_sid or "",
            auth_token=settings.twilio_auth_token or "",
        )
        return await fake.place_call(args.caller, args.called, behaviour, voice_path=voice_path)

    async def stringee(session: aiohttp.ClientSession) -> CallTrace:
        from service.platforms.stringee.simulate import FakeStringee

        if not settings.stringee_signing_secret:
            raise CallvaultError(
                "CALLVAULT_STRINGEE_SIGNING_SECRET is not set: nothing to sign with"
            )
        fake = FakeStringee(session, public_url, signing_secret=settings.stringee_signing_secret)
        return await fake.place_call(args.caller, args.called, behaviour)

    token = ""
    if args.platform == "pbx":
        if not args.token_file:
            raise CallvaultError(
                "--token-file is required with --platform pbx: a file holding a telephony token "
                "(`callvault token create --name pbx --role telephony`)"
            )
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise CallvaultError(f"--token-file: {exc.strerror}: {args.token_file}") from None

    async def pbx(session: aiohttp.ClientSession) -> CallTrace:
        from service.platforms.pbx.simulate import FakePbx

        fake = FakePbx(session, public_url, token=token)
        return await fake.place_call(args.caller, args.called, behaviour, queue=args.queue)

    platforms = {"twilio": twilio, "stringee": stringee, "pbx": pbx}

    async def run() -> int:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                trace = await platforms[args.platform](session)
            except aiohttp.ClientError as exc:
                raise CallvaultError(f"cannot reach callvault at {public_url}: {exc}") from None
        for step in trace.steps:
            print(step)
        print(f"result: {summary(trace)}")
        return 1 if trace.errors else 0

    return asyncio.run(run())


def cmd_demo(args: argparse.Namespace) -> int:
    from service import demo

    return demo.main(_settings(database=False), timeout_s=args.timeout, platform=args.platform)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _tenant_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tenant",
        default="default",
        help="the tenant this acts for (default: default)",
    )


# how a data-subject request came in (retention/requests.py: Channel), for `dsar KIND --channel`
# (spelled out: the CLI imports the service's modules only when a command runs)
DSAR_CHANNELS = ("phone", "email", "letter", "in_person", "web")
# the statuses of a data-subject request (retention/clock.py: Status), for `dsar list --status`
STATUS_CHOICES = (
    "received",
    "acknowledged",
    "in_progress",
    "waiting_for_hold",
    "in_force",
    "completed",
    "rejected",
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="callvault",
        description="Call-recording consent gate, ledger and retention service.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the HTTP service (migrates and builds prompts first)")
    p.set_defaults(func=cmd_serve)
    from service.worker_cli import add_parsers as add_role_parsers

    add_role_parsers(sub, p, cmd_serve)

    p = sub.add_parser("migrate", help="apply pending database migrations")
    p.set_defaults(func=cmd_migrate)

    prompts = sub.add_parser("prompts", help="recording notices")
    prompts_sub = prompts.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")
    p = prompts_sub.add_parser("build", help="render the notices to 8 kHz μ-law WAV and MP3")
    p.add_argument("--out", help="output folder (default $CALLVAULT_HOME/prompts)")
    p.set_defaults(func=cmd_prompts_build)

    ledger_p = sub.add_parser("ledger", help="the consent ledger")
    ledger_sub = ledger_p.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    p = ledger_sub.add_parser("verify", help="recompute every hash chain; exit 1 if one is broken")
    p.add_argument("--call", help="verify one call (its id)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--tenant",
        default="*",
        help="verify one tenant's chains and seals (default: every tenant, each seal chain "
        "on its own)",
    )
    p.set_defaults(func=cmd_ledger_verify)
    p = ledger_sub.add_parser("seal", help="seal every call's chain head now (serve does hourly)")
    _tenant_option(p)
    p.set_defaults(func=cmd_ledger_seal)

    token_p = sub.add_parser("token", help="API tokens (shown once, stored hashed)")
    token_sub = token_p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    p = token_sub.add_parser("create", help="create a token and print it once")
    p.add_argument("--name", required=True)
    p.add_argument(
        "--role",
        required=True,
        choices=["telephony", "qa_trainer", "compliance", "admin", "operator"],
    )
    p.add_argument(
        "--tenant",
        default="default",
        help="the tenant the token belongs to (default: default); '*' for a platform token "
        "(role operator, or a tenant role used with a Callvault-Tenant header)",
    )
    p.set_defaults(func=cmd_token_create)
    p = token_sub.add_parser("list", help="list tokens (never their values)")
    _tenant_option(p)
    p.set_defaults(func=cmd_token_list)
    p = token_sub.add_parser("revoke", help="revoke a token by id")
    p.add_argument("id")
    _tenant_option(p)
    p.set_defaults(func=cmd_token_revoke)

    p = sub.add_parser("purge", help="delete expired, unheld recordings now")
    p.add_argument("--dry-run", action="store_true", help="list what would go and why")
    p.add_argument("--limit", type=int, default=1000, help="with --dry-run: rows to list")
    p.set_defaults(func=cmd_purge)

    hold_p = sub.add_parser("hold", help="legal holds")
    hold_sub = hold_p.add_subparsers(dest="hold_command", required=True, metavar="ACTION")
    p = hold_sub.add_parser("place", help="hold a call, or every call of a number")
    p.add_argument("--call")
    p.add_argument("--phone")
    p.add_argument("--reason", required=True)
    p.add_argument("--case-ref")
    _tenant_option(p)
    p.set_defaults(func=cmd_hold_place)
    p = hold_sub.add_parser("release", help="release a hold by id")
    p.add_argument("id")
    _tenant_option(p)
    p.set_defaults(func=cmd_hold_release)
    p = hold_sub.add_parser("list", help="holds in force (--all: released ones too)")
    p.add_argument("--all", action="store_true")
    _tenant_option(p)
    p.set_defaults(func=cmd_hold_list)

    dsar_p = sub.add_parser("dsar", help="data-subject requests on the legal clock")
    dsar_sub = dsar_p.add_subparsers(dest="kind", required=True, metavar="KIND|ACTION")
    for kind, text in (
        ("access", "write a bundle of the person's calls and recordings"),
        ("correct", "attach the person's statement to calls (--statement), or --unlink them"),
        ("erase", "erase the person's recordings and number (holds win)"),
        ("withdraw", "never record the number again, and erase"),
        ("restrict", "keep the person's recordings but allow no playback or export until lifted"),
    ):
        p = dsar_sub.add_parser(kind, help=text)
        p.add_argument("--phone", required=True)
        p.add_argument(
            "--received-at",
            help="when the request came in (ISO 8601 with a zone); default now (the database's)",
        )
        p.add_argument(
            "--channel",
            choices=DSAR_CHANNELS,
            help="how the request came in (recorded with it)",
        )
        if kind == "access":
            p.add_argument("--out", help="where to write the bundle (zip)")
        if kind == "correct":
            p.add_argument(
                "--call", action="append", required=True, help="a call of the person (repeat)"
            )
            what = p.add_mutually_exclusive_group(required=True)
            what.add_argument("--statement", help="the person's statement, attached to the calls")
            what.add_argument(
                "--unlink", action="store_true", help="the calls are not theirs: unlink them"
            )
        _tenant_option(p)
        p.set_defaults(func=cmd_dsar)
    p = dsar_sub.add_parser("list", help="requests by deadline, with the time left")
    p.add_argument(
        "--due-within",
        help="only open requests with a deadline within this long (overdue included): 2d, 36h",
    )
    p.add_argument(
        "--status",
        default="open",
        choices=["open", "all", *STATUS_CHOICES],
        help="open (default), all, or one status",
    )
    p.add_argument("--limit", type=int, default=200)
    _tenant_option(p)
    p.set_defaults(func=cmd_dsar_list)
    for action, text in (
        ("acknowledge", "the person has been told their request arrived"),
        ("extend", "the one extension: --days N (at most 15) --reason R"),
        ("reject", "close a request without carrying it out: --reason R"),
        ("lift", "lift a restriction"),
    ):
        p = dsar_sub.add_parser(action, help=text)
        p.add_argument("id")
        if action == "extend":
            p.add_argument("--days", type=int, required=True)
        if action in ("extend", "reject"):
            p.add_argument("--reason", required=True)
        _tenant_option(p)
        p.set_defaults(func=cmd_dsar_action, action=action)

    secrets_p = sub.add_parser("secrets", help="the key that protects stored phone numbers")
    secrets_sub = secrets_p.add_subparsers(dest="secrets_command", required=True, metavar="ACTION")
    p = secrets_sub.add_parser(
        "rotate",
        help="re-encrypt stored numbers under CALLVAULT_SECRET_KEY (the previous key "
        "in CALLVAULT_PREVIOUS_SECRET_KEY)",
    )
    p.set_defaults(func=cmd_secrets_rotate)

    recordings_p = sub.add_parser("recordings", help="stored recordings")
    recordings_sub = recordings_p.add_subparsers(
        dest="recordings_command", required=True, metavar="ACTION"
    )
    p = recordings_sub.add_parser(
        "encrypt",
        help="seal recordings stored before callvault encrypted them, each under its own key "
        "(resumable: sealed ones are left as they are)",
    )
    p.add_argument("--all", action="store_true", help="every stored recording of every tenant")
    p.set_defaults(func=cmd_recordings_encrypt)

    calls_p = sub.add_parser("calls", help="repairs to stored calls")
    calls_sub = calls_p.add_subparsers(dest="calls_command", required=True, metavar="ACTION")
    p = calls_sub.add_parser(
        "mark-outbound",
        help="calls stored before directions were read whose caller is this contact-centre "
        "number were outbound: make the callee's number private and erasable",
    )
    p.add_argument("--from", dest="centre_number", required=True, help="the centre's number")
    _tenant_option(p)
    p.set_defaults(func=cmd_calls_mark_outbound)
    p = calls_sub.add_parser(
        "rehash",
        help="recompute the lookup hashes of numbers stored before they were normalised to "
        "E.164 (serve does it once by itself; idempotent)",
    )
    p.set_defaults(func=cmd_calls_rehash)

    jobs_p = sub.add_parser("jobs", help="the work queue: dead letters, retries")
    jobs_sub = jobs_p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    p = jobs_sub.add_parser("list", help="count jobs by state and list those in one state")
    p.add_argument("--state", default="dead", choices=["queued", "running", "done", "dead"])
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_jobs_list)
    p = jobs_sub.add_parser("retry", help="queue a dead job again from attempt 1")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_jobs_retry)

    p = sub.add_parser(
        "simulate",
        help="play a whole call against a running server, as Twilio, Stringee or a PBX would",
    )
    p.add_argument(
        "--platform",
        choices=("twilio", "stringee", "pbx"),
        default="twilio",
        help="whose webhooks to send (Stringee: signed with CALLVAULT_STRINGEE_SIGNING_SECRET; "
        "pbx: the PBX API with the telephony token in --token-file)",
    )
    p.add_argument("--token-file", help="--platform pbx: a file holding a tenant's telephony token")
    p.add_argument("--url", help="callvault's public URL (default CALLVAULT_PUBLIC_URL)")
    p.add_argument("--from", dest="caller", default="+84901234567", help="caller number")
    p.add_argument("--to", dest="called", default="+842873001234", help="called number")
    p.add_argument(
        "--queue", help="queue name (Twilio: on the voice webhook URL; pbx: in the call start)"
    )
    p.add_argument(
        "--behaviour",
        default="stay",
        help="stay (default), hang-up, silent, press-1, press-2, press-9,1 ...",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "demo",
        help="against `make serve` (embedded, no Twilio account): play calls through to stored "
        "recordings, print a QA token, the /qa URL and when each recording goes",
    )
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for intake")
    p.add_argument(
        "--platform",
        choices=("twilio", "stringee", "pbx"),
        default="twilio",
        help="whose calls to play",
    )
    p.set_defaults(func=cmd_demo)

    from service.receipts.cli import add_parser as add_receipt_parser
    from service.tenants.cli import add_parser as add_tenant_parser

    add_tenant_parser(sub)
    add_receipt_parser(sub)
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
    if isinstance(exc, CallvaultError):
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
