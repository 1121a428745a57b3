"""``callvault dsar ...``: data-subject requests on the legal clock."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from service.cli.common import (
    actor,
    object_stores,
    on_connection,
    phone_vault,
    settings_for,
    tenant_option,
    uuid_arg,
)
from service.errors import CallvaultError

# how a data-subject request came in (retention/dsar.py: Channel), for `dsar KIND --channel`
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


def _received_at(raw: str | None) -> Any:
    from service.web.untrusted import parse_timestamp

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
    from retention import clock, dsar
    from service.jobs import Defer

    settings = settings_for(database=True)
    vault = phone_vault(settings)
    out = Path(args.out) if getattr(args, "out", None) else None
    # Checked before the request exists: a bundle built for nowhere would otherwise be named
    # only as a failure of the object store, after the request had completed.
    if out is not None and not out.parent.is_dir():
        raise CallvaultError(f"--out {out}: no folder {out.parent}")
    if out is not None and out.is_dir():
        raise CallvaultError(f"--out {out}: is a folder; give the zip file's name")
    received_at = _received_at(args.received_at)
    call_ids = [uuid_arg(c, "--call") for c in getattr(args, "call", None) or []]

    async def work(conn: Any) -> int:
        request_id = await dsar.create(
            conn,
            vault,
            kind=args.kind,
            phone=args.phone,
            actor=actor(),
            clock_defaults=clock.for_settings(settings),
            received_at=received_at,
            call_ids=call_ids,
            statement=getattr(args, "statement", None),
            unlink=bool(getattr(args, "unlink", False)),
            channel=args.channel,
            sealed=bool(getattr(args, "sealed", False)),
        )
        if args.kind == "restrict":
            row = await dsar.get(conn, request_id)
            print(f"request {request_id}: {row['status']} (until lifted: dsar lift {request_id})")
            return 0
        stores = object_stores(settings)
        try:
            try:
                # carried out here and now; the queued job makes sure it finishes even if not
                await dsar.run(
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
            row = await dsar.get(conn, request_id)
            print(f"request {request_id}: {row['status']} (due {row['due_at'].isoformat()})")
            if args.kind == "access":
                # writing the bundle out is an export: a restriction in force forbids it
                await dsar.check_subject_not_restricted(conn, request_id)
                target = out or Path(f"callvault-access-{request_id}.zip")
                store = await stores.for_object(row["tenant_id"], row["bundle_store"], conn)
                await store.download_to(row["bundle_key"], target)
                print(f"wrote {target}")
        finally:
            await stores.close()
        return 0

    return on_connection(work, tenant=args.tenant, settings=settings)


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
    from retention import clock, dsar
    from service.config import parse_duration

    due_within = parse_duration("--due-within", args.due_within) if args.due_within else None
    if due_within is not None and due_within > dsar.MAX_DUE_WITHIN_S:
        raise CallvaultError(f"--due-within: at most 99999w, got {args.due_within!r}")
    if args.status == "open":
        statuses: list[str] | None = [s for s in dsar.STATUSES if s not in clock.CLOSED]
    else:
        statuses = None if args.status == "all" else [args.status]

    async def work(conn: Any) -> int:
        rows = await dsar.list_requests(
            conn, statuses=statuses, due_within_s=due_within, limit=args.limit
        )
        for row in rows:
            print(_request_line(dsar.request_json(row)))
        return 0

    return on_connection(work, tenant=args.tenant)


def cmd_dsar_action(args: argparse.Namespace) -> int:
    from retention import clock, dsar

    settings = settings_for(database=True, secrets=False)
    request_id = uuid_arg(args.id, "id")

    async def work(conn: Any) -> int:
        if args.action == "acknowledge":
            await dsar.acknowledge(conn, request_id, actor())
        elif args.action == "extend":
            await dsar.extend(
                conn,
                request_id,
                actor(),
                days=args.days,
                reason=args.reason,
                clock_defaults=clock.for_settings(settings),
            )
        elif args.action == "reject":
            await dsar.reject(conn, request_id, actor(), reason=args.reason)
        elif args.action == "lift":
            await dsar.lift(conn, request_id, actor())
        print(_request_line(dsar.request_json(await dsar.get(conn, request_id))))
        return 0

    return on_connection(work, tenant=args.tenant, settings=settings)


def add_parser(sub: Any) -> None:
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
            p.add_argument(
                "--sealed",
                action="store_true",
                help="the audio as stored (encrypted), each data key wrapped by the tenant's "
                "own KMS key (tenants with a KMS key only)",
            )
        if kind == "correct":
            p.add_argument(
                "--call", action="append", required=True, help="a call of the person (repeat)"
            )
            what = p.add_mutually_exclusive_group(required=True)
            what.add_argument("--statement", help="the person's statement, attached to the calls")
            what.add_argument(
                "--unlink", action="store_true", help="the calls are not theirs: unlink them"
            )
        tenant_option(p)
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
    tenant_option(p)
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
        tenant_option(p)
        p.set_defaults(func=cmd_dsar_action, action=action)
