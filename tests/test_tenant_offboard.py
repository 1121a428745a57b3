"""``callvault tenant export`` and ``tenant offboard`` (issue 13 item 7), run as an operator runs
them (the CLI in its own process, as the service's role), on two tenants beside ``default``:
one on the shared bucket, one with its own bucket on another S3 endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import boto3

from service.db import tenancy
from service.ledger import GENESIS, event_hash
from tests.conftest import Service, make_bucket, run_cli
from tests.intake_helpers import objects, settle
from tests.qa_fixtures import access_bundle, call_api
from tests.tenant_stores import (  # noqa: F401 - the *_fixture names are fixtures
    Recorded,
    Tenants,
    keys,
    own_s3_fixture,
    record,
    row_of,
    service_fixture,
    storage_settings_fixture,
    tenants_fixture,
    token_for,
)
from tests.twilio_media import FakeTwilioMedia

Conn = asyncpg.Connection
TENANT_TABLES = (
    "recordings",
    "recording_callbacks",
    "recording_reconciliations",
    "dsar_requests",
    "holds",
    "do_not_record",
    "jobs",
)


def cli_env(tenants: Tenants, tmp_path: Path) -> dict[str, str]:
    return {
        "CALLVAULT_S3_BUCKET": tenants.shared,
        "CALLVAULT_S3_ENDPOINT_URL": tenants.moto,
        "CALLVAULT_S3_REGION": "us-east-1",
        "CALLVAULT_HOME": str(tmp_path / "cli-home"),
    }


async def cli(database_url: str, *args: str, env: dict[str, str]) -> Any:
    return await asyncio.to_thread(run_cli, database_url, *args, env_overrides=env)


async def recorded(
    http: aiohttp.ClientSession,
    service: Service,
    media: FakeTwilioMedia,
    db: Conn,
    plan: dict[str, int],
) -> dict[str, list[Recorded]]:
    made: dict[str, list[Recorded]] = {}
    n = 0
    for tenant, count in plan.items():
        for _ in range(count):
            n += 1
            made.setdefault(tenant, []).append(
                await record(tenant, http, service, media, f"+849066{n:05d}")
            )
    await settle(db)
    return made


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_export_hands_over_every_recording_and_the_ledger_with_a_manifest(
    service: Service,
    http: aiohttp.ClientSession,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    tenants: Tenants,
    database_url: str,
    tmp_path: Path,
) -> None:
    made = await recorded(
        http, service, twilio_media, db, {"tenant-a": 2, "tenant-b": 1, "default": 1}
    )
    env = cli_env(tenants, tmp_path)
    for tenant in ("tenant-a", "tenant-b"):
        out = tmp_path / f"export-{tenant}"
        result = await cli(database_url, "tenant", "export", tenant, "--out", str(out), env=env)
        assert result.returncode == 0, result.stderr
        manifest = json.loads((out / "manifest.json").read_text())
        rows = {str((await row_of(db, r))["id"]): r for r in made[tenant]}
        assert {item["id"] for item in manifest["recordings"]} == set(rows)
        store = (tenants.moto, tenants.shared) if tenant == "tenant-a" else None
        stored = {
            o["key"]: o["head"]["Metadata"]["sha256"]
            for o in await objects(*(store or (tenants.own.url, tenants.own_bucket)))
        }
        for item in manifest["recordings"]:
            rec = rows[item["id"]]
            row = await row_of(db, rec)
            path = out / item["file"]
            # the manifest, the file, the store's object and the bytes Twilio served all agree
            assert item["sha256"] == sha(path) == stored[row["object_key"]]
            assert item["sha256"] == hashlib.sha256(rec.body).hexdigest()
            assert item["size_bytes"] == path.stat().st_size == len(rec.body)
            assert item["call_id"] == str(row["call_id"])
            assert item["platform_call_id"] == rec.call_sid
        assert sorted(p.name for p in (out / "recordings").iterdir()) == sorted(
            Path(i["file"]).name for i in manifest["recordings"]
        )  # nothing of another tenant, no temporary file left

        # the ledger: every event of the tenant's calls, each chain recomputable by the client
        lines = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
        await tenancy.set_tenant(db, tenancy.ALL)
        expected = await db.fetchval(
            "SELECT count(*) FROM ledger_events WHERE tenant_id = $1", tenant
        )
        assert len(lines) == expected == manifest["ledger"]["events"]
        assert manifest["ledger"]["sha256"] == sha(out / "ledger.jsonl")
        calls = {str(r["call_id"]) for r in [await row_of(db, x) for x in made[tenant]]}
        assert {e["call_id"] for e in lines} == calls
        previous: dict[str, bytes] = {}
        for e in lines:
            prev = previous.get(e["call_id"], GENESIS)
            assert bytes.fromhex(e["prev_hash"]) == prev
            recomputed = event_hash(
                uuid.UUID(e["call_id"]),
                e["seq"],
                e["type"],
                datetime.fromisoformat(e["at"]),
                e["details"],
                e["dedupe_key"],
                prev,
            )
            assert recomputed.hex() == e["hash"]
            previous[e["call_id"]] = recomputed


async def test_an_export_killed_part_way_resumes_and_skips_what_is_complete(
    service: Service,
    http: aiohttp.ClientSession,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    tenants: Tenants,
    database_url: str,
    tmp_path: Path,
) -> None:
    made = await recorded(http, service, twilio_media, db, {"tenant-a": 3})
    env = cli_env(tenants, tmp_path)
    out = tmp_path / "export"
    args = ("tenant", "export", "tenant-a", "--out", str(out))
    crashed = await cli(
        database_url, *args, env={**env, "CALLVAULT_FAILPOINTS": "export.after_file"}
    )
    assert crashed.returncode == -9  # killed right after the first file was complete
    first = list((out / "recordings").glob("*.wav"))
    assert len(first) == 1 and not (out / "manifest.json").exists()
    first_inode = first[0].stat().st_ino
    # a torn download of another one, as a crash during it would leave
    rows = [await row_of(db, r) for r in made["tenant-a"]]
    torn = next(r for r in rows if f"{r['id']}.wav" != first[0].name)
    (out / "recordings" / f".{torn['id']}.wav.part").write_bytes(b"half a file")

    resumed = await cli(database_url, *args, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "3 recording(s) (2 fetched, 1 already complete)" in resumed.stdout
    assert first[0].stat().st_ino == first_inode  # not fetched again
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["recordings"]) == 3
    for item in manifest["recordings"]:
        assert sha(out / item["file"]) == item["sha256"]
    assert not list((out / "recordings").glob(".*"))  # no temporary file left

    # a file damaged after the export is noticed by its SHA-256 and fetched again
    damaged = out / manifest["recordings"][0]["file"]
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    again = await cli(database_url, *args, env=env)
    assert again.returncode == 0, again.stderr
    assert "(1 fetched, 2 already complete)" in again.stdout
    assert sha(damaged) == manifest["recordings"][0]["sha256"]


async def test_export_to_an_s3_target_is_checked_and_resumable(
    service: Service,
    http: aiohttp.ClientSession,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    tenants: Tenants,
    database_url: str,
    tmp_path: Path,
) -> None:
    made = await recorded(http, service, twilio_media, db, {"tenant-b": 2})
    handover = make_bucket(tenants.moto)
    env = cli_env(tenants, tmp_path)
    args = ("tenant", "export", "tenant-b", "--out", f"s3://{handover}/acme/2026")
    first = await cli(database_url, *args, env=env)
    assert first.returncode == 0, first.stderr
    assert "(2 fetched, 0 already complete)" in first.stdout
    found = {o["key"]: o for o in await objects(tenants.moto, handover)}
    client = boto3.client("s3", endpoint_url=tenants.moto, region_name="us-east-1")
    body = client.get_object(Bucket=handover, Key="acme/2026/manifest.json")["Body"].read()
    manifest = json.loads(body)
    assert set(found) == {
        "acme/2026/manifest.json",
        "acme/2026/ledger.jsonl",
        "acme/2026/seals.jsonl",
        *(f"acme/2026/{i['file']}" for i in manifest["recordings"]),
    }
    bodies = {str((await row_of(db, r))["id"]): r.body for r in made["tenant-b"]}
    for item in manifest["recordings"]:
        got = client.get_object(Bucket=handover, Key=f"acme/2026/{item['file']}")["Body"].read()
        assert hashlib.sha256(got).hexdigest() == item["sha256"]
        assert got == bodies[item["id"]]
    again = await cli(database_url, *args, env=env)
    assert again.returncode == 0, again.stderr
    assert "(0 fetched, 2 already complete)" in again.stdout


async def test_offboard_is_refused_under_a_hold_and_for_default(
    service: Service,
    http: aiohttp.ClientSession,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    tenants: Tenants,
    database_url: str,
    tmp_path: Path,
) -> None:
    made = await recorded(http, service, twilio_media, db, {"tenant-a": 1})
    row = await row_of(db, made["tenant-a"][0])
    await tenancy.set_tenant(db, "tenant-a")
    await db.execute(
        "INSERT INTO holds (call_id, reason, placed_by) VALUES ($1, 'litigation', 'test')",
        row["call_id"],
    )
    env = cli_env(tenants, tmp_path)
    refused = await cli(
        database_url, "tenant", "offboard", "tenant-a", "--out", str(tmp_path / "x"), env=env
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "callvault: error: tenant tenant-a has 1 active legal hold(s); release them before "
        "offboarding"
    ]
    assert not (tmp_path / "x").exists()  # nothing exported either
    assert (await row_of(db, made["tenant-a"][0]))["state"] == "stored"
    assert await keys(tenants.moto, tenants.shared) == {row["object_key"]}

    default = await cli(database_url, "tenant", "offboard", "default", "--skip-export", env=env)
    assert default.returncode == 1 and "cannot be offboarded" in default.stderr
    neither = await cli(database_url, "tenant", "offboard", "tenant-a", env=env)
    assert neither.returncode == 2 and "--out" in neither.stderr  # export or say --skip-export


async def test_offboard_exports_then_leaves_only_the_ledger_s_proof(
    service: Service,
    http: aiohttp.ClientSession,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    tenants: Tenants,
    database_url: str,
    tmp_path: Path,
) -> None:
    made = await recorded(http, service, twilio_media, db, {"tenant-a": 1, "tenant-b": 2})
    b_rows = [await row_of(db, r) for r in made["tenant-b"]]
    a_row = await row_of(db, made["tenant-a"][0])
    # b also has an access bundle in its bucket, a released hold, a do-not-record entry
    compliance_b = await token_for(db, "tenant-b", "compliance")
    await tenancy.set_tenant(db, tenancy.ALL)
    await access_bundle(http, service, compliance_b, made["tenant-b"][0].caller, db)
    await tenancy.set_tenant(db, "tenant-b")
    hold = await db.fetchval(
        "INSERT INTO holds (call_id, reason, placed_by) VALUES ($1, 'audit', 'test') RETURNING id",
        b_rows[1]["call_id"],
    )
    await db.execute(
        "UPDATE holds SET released_at = now(), released_by = 'test' WHERE id = $1", hold
    )
    status, _ = await call_api(
        http,
        service,
        "POST",
        "/api/dsar",
        compliance_b,
        {"kind": "withdraw", "phone": "+84906699999"},
    )
    assert status == 201
    await tenancy.set_tenant(db, tenancy.ALL)
    await settle(db)
    assert len(await keys(tenants.own.url, tenants.own_bucket)) == 3  # 2 recordings, 1 bundle
    events_before = await db.fetchval(
        "SELECT count(*) FROM ledger_events WHERE tenant_id = 'tenant-b'"
    )

    env = cli_env(tenants, tmp_path)
    out = tmp_path / "handover"
    result = await cli(database_url, "tenant", "offboard", "tenant-b", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert "offboarded tenant tenant-b: 2 call(s) erased" in result.stdout

    # the client has everything it was owed
    manifest = json.loads((out / "manifest.json").read_text())
    assert {i["id"] for i in manifest["recordings"]} == {str(r["id"]) for r in b_rows}
    for item in manifest["recordings"]:
        assert sha(out / item["file"]) == item["sha256"]

    # nothing of b's call data is left: no object, no row, no number
    assert await keys(tenants.own.url, tenants.own_bucket) == set()
    for table in TENANT_TABLES:
        left = await db.fetchval(
            f"SELECT count(*) FROM {table} WHERE tenant_id = 'tenant-b'"  # noqa: S608
        )
        assert left == 0, table
    calls = await db.fetch("SELECT * FROM calls WHERE tenant_id = 'tenant-b'")
    assert len(calls) == 2
    assert all(c["caller_enc"] is None and c["caller_hash"] is None for c in calls)
    assert all(c["erased_at"] is not None for c in calls)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM api_tokens WHERE tenant_id = 'tenant-b' AND revoked_at IS NULL"
        )
        == 0
    )
    assert (
        await db.fetchval("SELECT count(*) FROM tenant_accounts WHERE tenant_id = 'tenant-b'") == 0
    )
    # the proof stays: every event, one erased and one key_destroyed (its recording's data
    # key shredded) per call more, a seal, the audit entry
    events_after = await db.fetchval(
        "SELECT count(*) FROM ledger_events WHERE tenant_id = 'tenant-b'"
    )
    assert events_after == events_before + 4
    assert (
        await db.fetchval(
            "SELECT count(*) FROM ledger_events WHERE tenant_id = 'tenant-b' "
            "AND type = 'key_destroyed'"
        )
        == 2
    )
    assert await db.fetchval("SELECT count(*) FROM ledger_seals WHERE tenant_id = 'tenant-b'") >= 1
    entry = await db.fetchrow(
        "SELECT * FROM audit_log WHERE tenant_id = 'tenant-b' AND action = 'tenant_offboarded'"
    )
    assert entry is not None and entry["details"]["calls_erased"] == 2
    verified = await cli(database_url, "ledger", "verify", "--tenant", "tenant-b", env=env)
    assert verified.returncode == 0, verified.stderr
    assert f"verified {events_after} events in 2 calls" in verified.stdout

    # tenant a is untouched
    assert (await row_of(db, made["tenant-a"][0]))["state"] == "stored"
    assert await keys(tenants.moto, tenants.shared) == {a_row["object_key"]}
    # running it again finds nothing more to do, and still verifies
    again = await cli(database_url, "tenant", "offboard", "tenant-b", "--skip-export", env=env)
    assert again.returncode == 0, again.stderr
    assert (
        await cli(database_url, "ledger", "verify", "--tenant", "tenant-b", env=env)
    ).returncode == 0


async def test_offboarding_deletes_a_bundle_upload_left_in_the_store_the_tenant_moved_from(
    db: Conn, tenants: Tenants, database_url: str, tmp_path: Path
) -> None:
    """Tenant b moved from the shared bucket to its own while a bundle run's upload was left in
    the shared one (announced, never committed): offboarding deletes it there, where its row
    says it went, not in b's bucket of today."""
    left = f"tenants/tenant-b/dsar/{uuid.uuid4()}/before-the-move.zip"
    await tenancy.set_tenant(db, tenancy.ALL)
    await db.execute(
        "INSERT INTO dsar_requests (tenant_id, kind, requested_by, due_at, bundle_uploads) "
        "VALUES ('tenant-b', 'access', 'test', now(), jsonb_build_object($1::text, 'shared'))",
        left,
    )
    await asyncio.to_thread(
        boto3.client("s3", endpoint_url=tenants.moto, region_name="us-east-1").put_object,
        Bucket=tenants.shared,
        Key=left,
        Body=b"a bundle whose run never committed",
    )
    env = cli_env(tenants, tmp_path)
    done = await cli(database_url, "tenant", "offboard", "tenant-b", "--skip-export", env=env)
    assert done.returncode == 0, done.stderr
    assert left not in await keys(tenants.moto, tenants.shared)
    assert await db.fetchval("SELECT count(*) FROM dsar_requests WHERE tenant_id = 'tenant-b'") == 0


async def test_offboarding_deletes_a_recording_upload_left_in_the_store_the_tenant_moved_from(
    db: Conn, tenants: Tenants, database_url: str, tmp_path: Path
) -> None:
    """An intake attempt uploaded tenant b's recording to the shared bucket (b's store then)
    and never committed; b then moved to its own bucket: offboarding deletes the upload in the
    shared bucket, which the row names, not only in b's bucket of today."""
    await tenancy.set_tenant(db, "tenant-b")
    call_id = await db.fetchval(
        "INSERT INTO calls (platform, external_id, policy) VALUES ('twilio', $1, '{}') "
        "RETURNING id",
        "CA" + uuid.uuid4().hex,
    )
    recording = await db.fetchval(
        "INSERT INTO recordings (call_id, platform, external_id, upload_store) "
        "VALUES ($1, 'twilio', $2, 'shared') RETURNING id",
        call_id,
        "RE" + uuid.uuid4().hex,
    )
    left = f"tenants/tenant-b/recordings/{recording}.wav"
    await asyncio.to_thread(
        boto3.client("s3", endpoint_url=tenants.moto, region_name="us-east-1").put_object,
        Bucket=tenants.shared,
        Key=left,
        Body=b"RIFF an upload that never committed",
    )
    env = cli_env(tenants, tmp_path)
    done = await cli(database_url, "tenant", "offboard", "tenant-b", "--skip-export", env=env)
    assert done.returncode == 0, done.stderr
    assert left not in await keys(tenants.moto, tenants.shared)
    await tenancy.set_tenant(db, tenancy.ALL)
    assert await db.fetchval("SELECT count(*) FROM recordings WHERE id = $1", recording) == 0
