"""Consent receipts: signed by the tenant, checkable offline with nothing but the file and the
public key, refused for another tenant's call, and handed to the subject in the access bundle."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import rfc8785
from cryptography.exceptions import InvalidTag

from prompts import catalogue
from service import auth, ledger
from service.config import Settings
from service.db import tenancy
from service.ledger import NewEvent, seals
from service.personal.numbers import PhoneVault
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.receipts import keys
from service.receipts.verify import ReceiptInvalid, verify
from tests.conftest import SECRET_KEY, Service, run_cli
from tests.qa_fixtures import access_bundle, call_api

Conn = asyncpg.Connection
PERSON = "+84905550188"
OTHER = "beta"


async def _call(twilio: FakeTwilio, db: Conn, caller: str = PERSON) -> str:
    trace = await twilio.place_call(caller, "+842873001234", Caller.parse("stay"))
    call_id = await db.fetchval("SELECT id FROM calls WHERE external_id = $1", trace.call_sid)
    assert call_id is not None
    return str(call_id)


async def _receipt(
    http: aiohttp.ClientSession, service: Service, token: str, call_id: str, query: str = ""
) -> tuple[int, bytes, str]:
    async with http.get(
        f"{service.base_url}/api/calls/{call_id}/receipt{query}",
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        return r.status, await r.read(), r.content_type


async def _current_key(http: aiohttp.ClientSession, service: Service, token: str) -> str:
    status, listed = await call_api(http, service, "GET", "/api/receipt-keys", token)
    assert status == 200
    (current,) = [k for k in listed["items"] if k["current"]]
    key: str = current["public_key"]
    return key


async def _other_tenant_token(db: Conn) -> str:
    """A compliance token of a second tenant, ``beta``."""
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1, 'Beta')", OTHER)
    await tenancy.set_tenant(db, OTHER)
    token = (await auth.create_token(db, "beta-compliance", "compliance", "test"))[0]
    await tenancy.set_tenant(db, tenancy.DEFAULT)
    return token


def _verify_offline(path: Path, key: str) -> subprocess.CompletedProcess[str]:
    """``callvault receipt verify`` in a process that has no database and no settings at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "PG"))}
    env["CALLVAULT_HOME"] = str(path.parent / "nowhere")  # nothing to find there either
    return subprocess.run(
        [sys.executable, "-m", "service", "receipt", "verify", str(path), "--public-key", key],
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )


async def test_a_sealed_calls_receipt_is_signed_complete_and_verifies_offline(
    service: Service,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    database_url: str,
    tmp_path: Path,
) -> None:
    call_id = await _call(twilio, db)
    await _call(twilio, db, "+84905550199")
    assert await seals.seal(db) is not None
    status, body, content_type = await _receipt(http, service, tokens["compliance"], call_id)
    assert status == 200 and content_type == "application/json"
    receipt = json.loads(body)
    assert body == rfc8785.dumps(receipt)  # issued in canonical form
    for field in ("version", "tenant", "call", "notice", "events", "seal", "proof", "signature"):
        assert field in receipt
    assert receipt["version"] == 1 and receipt["tenant"]["id"] == "default"
    assert receipt["call"]["id"] == call_id and receipt["call"]["subject"] == "+84 9** *** 188"
    assert receipt["call"]["direction"] == "inbound"
    assert receipt["call"]["outcome"] == "consented"
    assert PERSON not in body.decode()
    notice = receipt["notice"]
    prompt = next(p for p in catalogue.catalogue() if (p.id, p.version) == (notice["prompt_id"], 1))
    assert notice["text"] == prompt.text and notice["language"] == prompt.language
    played = [e for e in receipt["events"] if e["type"] == "notice_played"]
    assert notice["audio_sha256"] == played[0]["details"]["sha256"]
    stored = await ledger.events_of(db, uuid.UUID(call_id))
    assert [e["hash"] for e in receipt["events"]] == [e.hash.hex() for e in stored]
    assert receipt["coverage"]["status"] == "sealed"
    assert receipt["proof"]["tree_size"] == 2 and len(receipt["proof"]["path"]) == 1

    key = await _current_key(http, service, tokens["qa_trainer"])  # any role may read it
    printed = await asyncio.to_thread(run_cli, database_url, "receipt", "key")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == key + "\n" and len(base64.b64decode(key)) == 32

    path = tmp_path / "receipt.json"
    path.write_bytes(body)
    checked = await asyncio.to_thread(_verify_offline, path, key)
    assert checked.returncode == 0, checked.stderr
    assert "receipt verified" in checked.stdout
    assert f"events: {len(stored)} chained from genesis" in checked.stdout
    assert "leaf" in checked.stdout and "RFC 6962" in checked.stdout

    # the CLI hands out the same receipt (newly signed: same content, same key)
    out = tmp_path / "cli.json"
    made = await asyncio.to_thread(run_cli, database_url, "receipt", call_id, "--out", str(out))
    assert made.returncode == 0, made.stderr
    cli_receipt = json.loads(out.read_bytes())
    assert cli_receipt["events"] == receipt["events"] and cli_receipt["seal"] == receipt["seal"]
    assert (await asyncio.to_thread(_verify_offline, out, key)).returncode == 0


async def test_changing_any_byte_or_using_another_tenants_key_fails_and_says_what(
    service: Service,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    tmp_path: Path,
) -> None:
    call_id = await _call(twilio, db)
    await seals.seal(db)
    _, body, _ = await _receipt(http, service, tokens["compliance"], call_id)
    key = await _current_key(http, service, tokens["compliance"])
    assert verify(body, key)
    # every byte position, each changed to another byte: never verifies
    accepted = []
    for i in range(len(body)):
        for replacement in {ord("0") if body[i] != ord("0") else ord("1"), ord(" ")} - {body[i]}:
            changed = body[:i] + bytes([replacement]) + body[i + 1 :]
            try:
                verify(changed, key)
            except ReceiptInvalid:
                continue
            accepted.append((i, body[max(0, i - 30) : i + 30], chr(replacement)))
    assert accepted == []
    # the messages name what failed
    text = body.decode()
    outcome = text.replace('"outcome":"consented"', '"outcome":"refused"', 1)
    with pytest.raises(ReceiptInvalid, match=r"^signature: .*changed after it was signed"):
        verify(outcome.encode(), key)
    with pytest.raises(ReceiptInvalid, match=r"^file: not byte for byte as issued"):
        verify(json.dumps(json.loads(body), indent=2).encode(), key)

    # another tenant's key: the receipt names its own, and fails with the other
    beta_token = await _other_tenant_token(db)
    beta_key = await _current_key(http, service, beta_token)
    assert beta_key != key
    with pytest.raises(ReceiptInvalid, match="does not verify with the public key given"):
        verify(body, beta_key)
    path = tmp_path / "r.json"
    path.write_bytes(body)
    refused = await asyncio.to_thread(_verify_offline, path, beta_key)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "signature: does not verify" in refused.stderr
    assert key in refused.stderr  # it names the key that did sign it


async def test_another_tenants_call_is_404_by_api_and_cli(
    service: Service,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    database_url: str,
) -> None:
    call_id = await _call(twilio, db)
    beta_token = await _other_tenant_token(db)
    status, body, _ = await _receipt(http, service, beta_token, call_id)
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    status, _, _ = await _receipt(http, service, tokens["compliance"], str(uuid.uuid4()))
    assert status == 404
    status, _, _ = await _receipt(http, service, tokens["qa_trainer"], call_id)
    assert status == 403  # receipts are compliance's
    cli = await asyncio.to_thread(run_cli, database_url, "receipt", call_id, "--tenant", OTHER)
    assert cli.returncode == 1 and cli.stderr.count("\n") == 1
    assert f"no call {call_id}" in cli.stderr
    assert (await db.fetchval("SELECT count(*) FROM receipt_keys WHERE tenant_id = $1", OTHER)) == 0


async def test_an_unsealed_call_says_so_and_when_the_next_seal_is_due(
    service: Service,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
) -> None:
    first = await _call(twilio, db)
    await seals.seal(db)
    sealed_at = await db.fetchval("SELECT max(at) FROM ledger_seals")
    late = await _call(twilio, db, "+84905550111")
    key = await _current_key(http, service, tokens["compliance"])

    _, body, _ = await _receipt(http, service, tokens["compliance"], late)
    receipt = json.loads(body)
    assert receipt["seal"] is None and receipt["proof"] is None
    coverage = receipt["coverage"]
    assert coverage["status"] == "not_sealed" and "no seal covers" in coverage["note"]
    interval = service.settings.seal_interval_s
    due = coverage["next_seal_due_by"]
    assert due == (sealed_at + timedelta(seconds=interval)).isoformat(timespec="microseconds")
    assert any("none covers this call yet" in line for line in verify(body, key))

    # an event after the seal: the earlier part is proven, the rest waits for the next seal
    async with db.transaction():
        await ledger.append(db, uuid.UUID(first), [NewEvent("call_ended", {"status": "done"})])
    _, body, _ = await _receipt(http, service, tokens["compliance"], first)
    receipt = json.loads(body)
    assert receipt["coverage"]["status"] == "partly_sealed"
    assert receipt["coverage"]["sealed_through_seq"] == len(receipt["events"]) - 1
    assert verify(body, key)


async def test_the_printable_page_escapes_everything(
    service: Service,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
) -> None:
    call_id = await _call(twilio, db)
    async with db.transaction():
        await ledger.append(
            db, uuid.UUID(call_id), [NewEvent("call_ended", {"note": "<script>alert(1)</script>"})]
        )
    await seals.seal(db)
    status, body, content_type = await _receipt(
        http, service, tokens["compliance"], call_id, "?format=html"
    )
    assert status == 200 and content_type == "text/html"
    page = body.decode()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Consent receipt" in page and "callvault receipt verify" in page
    status, _, _ = await _receipt(http, service, tokens["compliance"], call_id, "?format=pdf")
    assert status == 400


async def test_keys_rotate_and_old_receipts_still_verify_with_the_old_key(
    service: Service,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    database_url: str,
) -> None:
    call_id = await _call(twilio, db)
    await seals.seal(db)
    old_key = await _current_key(http, service, tokens["compliance"])
    _, old_receipt, _ = await _receipt(http, service, tokens["compliance"], call_id)
    rotated = await asyncio.to_thread(run_cli, database_url, "receipt", "key", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.strip()
    assert new_key != old_key and await _current_key(http, service, tokens["admin"]) == new_key
    _, listed = await call_api(http, service, "GET", "/api/receipt-keys", tokens["telephony"])
    assert [(k["public_key"], k["current"]) for k in listed["items"]] == [
        (old_key, False),
        (new_key, True),
    ]
    assert listed["items"][0]["retired_at"] is not None
    assert verify(old_receipt, old_key)
    _, new_receipt, _ = await _receipt(http, service, tokens["compliance"], call_id)
    assert json.loads(new_receipt)["key"]["public_key"] == new_key
    assert verify(new_receipt, new_key)
    with pytest.raises(ReceiptInvalid, match="signature"):
        verify(new_receipt, old_key)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="kept for ever"):
        await db.execute("DELETE FROM receipt_keys")


_ZERO_KEY = ["--public-key", base64.b64encode(bytes(32)).decode()]


def _shaped(**fields: object) -> bytes:
    """A file shaped like a receipt (every field, a signature of the right form) but for
    ``fields``."""
    document: dict[str, object] = {
        "version": 1,
        "tenant": {"id": "acme"},
        "call": {"id": "c"},
        "notice": None,
        "events": [],
        "seal": None,
        "proof": None,
        "signature": {
            "algorithm": "Ed25519",
            "canonicalization": "RFC 8785",
            "value": base64.b64encode(bytes(64)).decode(),
        },
    }
    return json.dumps(document | fields).encode()


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (b"not json {", ["--public-key", base64.b64encode(bytes(32)).decode()], "not JSON"),
        (b"[1, 2]", ["--public-key", base64.b64encode(bytes(32)).decode()], "not an object"),
        (b'{"version": 1}', ["--public-key", base64.b64encode(bytes(32)).decode()], "no tenant"),
        (b"{}", ["--public-key", "bm90IGEga2V5"], "public key: 9 bytes"),
        (_shaped(key="oops"), _ZERO_KEY, "not a receipt: key is not an object"),
        (_shaped(tenant="acme"), _ZERO_KEY, "not a receipt: tenant is not an object"),
        (b"{}", [], "--public-key KEY is required"),
    ],
)
def test_a_malformed_receipt_file_is_one_line_and_exits_non_zero(
    tmp_path: Path, content: bytes, args: list[str], message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    result = subprocess.run(
        [sys.executable, "-m", "service", "receipt", "verify", str(path), *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "service", "receipt", "verify", str(tmp_path / "none.json"), *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1


async def test_a_tenant_gets_its_key_when_created_by_api_and_cli(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    database_url: str,
) -> None:
    status, _ = await call_api(
        http, service, "POST", "/api/tenants", tokens["operator"], {"id": "acme", "name": "ACME"}
    )
    assert status == 201
    made = await asyncio.to_thread(run_cli, database_url, "tenant", "create", "zeta", "--name", "Z")
    assert made.returncode == 0, made.stderr
    rows = await db.fetch("SELECT tenant_id FROM receipt_keys ORDER BY tenant_id")
    assert [r["tenant_id"] for r in rows] == ["acme", "zeta"]
    printed = await asyncio.to_thread(run_cli, database_url, "receipt", "key", "--tenant", "zeta")
    assert printed.returncode == 0, printed.stderr
    public = bytes(
        await db.fetchval("SELECT public_key FROM receipt_keys WHERE tenant_id = 'zeta'")
    )
    assert printed.stdout == base64.b64encode(bytes(public)).decode() + "\n"


async def test_secrets_rotate_re_encrypts_the_signing_keys_bound_to_their_tenant(
    db: Conn,
) -> None:
    await db.execute("INSERT INTO tenants (id, name) VALUES ('acme', 'ACME')")
    old, new = PhoneVault("old-secret-" + "o" * 32), PhoneVault("new-secret-" + "n" * 32)
    signer = await keys.signer(db, old, "acme")
    rotating = PhoneVault("new-secret-" + "n" * 32, "old-secret-" + "o" * 32)
    await tenancy.set_tenant(db, tenancy.ALL)
    assert await keys.rekey(db, rotating) == 1
    assert await keys.rekey(db, rotating) == 0  # done already
    after = await keys.signer(db, new, "acme")
    assert after.key_id == signer.key_id and after.public_key == signer.public_key
    # a ciphertext is bound to its tenant: read as another tenant's key it does not open
    blob = bytes(
        await db.fetchval("SELECT private_key_enc FROM receipt_keys WHERE id = $1", after.key_id)
    )
    with pytest.raises(InvalidTag):
        new.decrypt_secret_with_age(blob, b"callvault:receipt-key:v1:default:" + after.key_id.bytes)


@pytest.fixture
async def bundle_service(intake_settings: Settings) -> AsyncIterator[Service]:
    svc = Service(replace(intake_settings, purge_interval_s=3600))
    await svc.start()
    yield svc
    await svc.stop()


async def test_the_access_bundle_holds_the_subjects_receipts(
    bundle_service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    tmp_path: Path,
) -> None:
    call_ids = await _bundle_calls(db)
    await seals.seal(db)
    key = await _current_key(http, bundle_service, tokens["compliance"])
    _, bundle = await access_bundle(http, bundle_service, tokens["compliance"], PERSON, db)
    names = set(bundle.namelist())
    assert {f"receipts/{c}.json" for c in call_ids} <= names
    assert {"receipts/keys.json", "receipts/README.txt"} <= names
    keys_listed = json.loads(bundle.read("receipts/keys.json"))
    assert [k["public_key"] for k in keys_listed["keys"]] == [key]
    assert key in bundle.read("receipts/README.txt").decode()
    for call_id in call_ids:
        data = bundle.read(f"receipts/{call_id}.json")
        receipt = json.loads(data)
        assert receipt["view"] == "data_subject"
        # the subject's view: no positions or hashes that could show withheld casework
        assert all("seq" not in e and "hash" not in e for e in receipt["events"])
        assert "hold_placed" not in data.decode()
        checked = verify(data, key)
        assert any("leaf" in line for line in checked)
        path = tmp_path / f"{call_id}.json"
        path.write_bytes(data)
        assert (await asyncio.to_thread(_verify_offline, path, key)).returncode == 0


async def _bundle_calls(db: Conn) -> list[str]:
    """Two calls of PERSON with a consent story, one under a legal hold (casework)."""
    vault = PhoneVault(SECRET_KEY)
    made = []
    for n in range(2):
        call_id = await db.fetchval(
            "INSERT INTO calls (platform, external_id, caller_enc, caller_hash, called, policy, "
            "outcome, outcome_at) VALUES ('twilio', $1, $2, $3, '+842873001234', '{}', "
            "'consented', now()) RETURNING id",
            f"CA{n:032d}",
            vault.encrypt(PERSON),
            vault.lookup_hash(PERSON),
        )
        prompt = catalogue.find("implied", "vi-VN")
        async with db.transaction():
            await ledger.append(
                db,
                call_id,
                [
                    NewEvent("call_started", {"direction": "inbound"}),
                    NewEvent(
                        "notice_played",
                        {
                            "prompt_id": prompt.id,
                            "version": prompt.version,
                            "language": prompt.language,
                            "mode": prompt.mode,
                            "rendering": "play",
                            "sha256": "ab" * 32,
                            "attempt": 1,
                        },
                    ),
                    NewEvent("consent_given", {"mode": "implied"}),
                ],
            )
        made.append(str(call_id))
    async with db.transaction():
        await ledger.append(db, uuid.UUID(made[0]), [NewEvent("hold_placed", {"reason": "case 7"})])
    return made
