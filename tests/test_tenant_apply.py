"""``callvault tenant apply``: declarative, idempotent, all or nothing, secrets by reference."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.conftest import run_cli
from tests.tenant_files import ACME, dump, write

Conn = asyncpg.Connection


async def test_apply_twice_changes_nothing_the_second_time(
    database_url: str, db: Conn, tmp_path: Path
) -> None:
    path = write(tmp_path, ACME)
    first = run_cli(database_url, "tenant", "apply", path)
    assert first.returncode == 0, first.stderr
    assert "+ tenants.acme.queues.sales" in first.stdout
    assert '+ tenants.acme.numbers."+842873009999".queue = "sales"' in first.stdout
    assert "+ tenants.acme.retention = 180d" in first.stdout
    assert "applied: 2 tenant(s) changed" in first.stdout
    stored = await dump(db)
    assert {r["id"] for r in stored["tenants"]} == {"default", "acme", "beta"}
    assert {(r["tenant_id"], r["number"], r["queue"]) for r in stored["tenant_numbers"]} == {
        ("acme", "+842873009999", "sales"),
        ("acme", "+842873009998", None),
        ("beta", "+842873008888", None),
    }
    acme = next(r for r in stored["tenants"] if r["id"] == "acme")
    assert acme["policy"]["retention"] == 180 * 86400
    assert acme["policy"]["deadlines"] == {"acknowledge": 2 * 86400, "access": 15 * 86400}
    accounts = {(r["platform"], r["account_id"]): r for r in stored["tenant_accounts"]}
    assert accounts[("twilio", "AC0123456789abcdef0123456789abcdef")]["secrets"] == {
        "auth_token_env": "ACME_TWILIO_AUTH_TOKEN"
    }
    audit = await db.fetch(
        "SELECT action, target_id FROM audit_log WHERE target_type = 'tenant' ORDER BY id"
    )
    assert [(r["action"], r["target_id"]) for r in audit] == [
        ("tenant_created", "acme"),
        ("tenant_created", "beta"),
    ]

    second = run_cli(database_url, "tenant", "apply", path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "no changes: the tenants are as the file says"
    assert await dump(db) == stored  # not even updated_at moved
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE target_type = 'tenant'") == 2


async def test_apply_removes_what_the_file_drops_and_leaves_unnamed_tenants(
    database_url: str, db: Conn, tmp_path: Path
) -> None:
    assert run_cli(database_url, "tenant", "apply", write(tmp_path, ACME)).returncode == 0
    smaller = """
[tenants.acme]
name = "ACME Insurance Ltd"
retention = "200d"
[tenants.acme.queues.sales]
[tenants.acme.numbers."+842873009999"]
queue = "sales"
"""
    result = run_cli(database_url, "tenant", "apply", write(tmp_path, smaller, "small.toml"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '~ tenants.acme.name: "ACME Insurance" -> "ACME Insurance Ltd"' in out
    assert "~ tenants.acme.retention: 180d -> 200d" in out
    assert "- tenants.acme.queues.support" in out
    assert '- tenants.acme.numbers."+842873009998"' in out
    assert "- tenants.acme.twilio.AC0123456789abcdef0123456789abcdef" in out
    assert "- tenants.acme.storage" in out
    assert "beta" not in out
    stored = await dump(db)
    assert [r["name"] for r in stored["tenant_queues"]] == ["sales"]
    assert not stored["tenant_accounts"] and not stored["tenant_storage"]
    # beta was not named: untouched
    assert ("beta", "+842873008888") in {
        (r["tenant_id"], r["number"]) for r in stored["tenant_numbers"]
    }
    action = await db.fetchval(
        "SELECT action FROM audit_log WHERE target_id = 'acme' ORDER BY id DESC LIMIT 1"
    )
    assert action == "tenant_applied"


async def test_dry_run_prints_the_plan_and_writes_nothing(
    database_url: str, db: Conn, tmp_path: Path
) -> None:
    before = await dump(db)
    result = run_cli(database_url, "tenant", "apply", "--dry-run", write(tmp_path, ACME))
    assert result.returncode == 0, result.stderr
    assert "+ tenants.acme" in result.stdout.splitlines()
    assert "dry run: 2 tenant(s) would change; nothing written" in result.stdout
    assert await dump(db) == before
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0


BAD_FILES = {
    "bad slug": ('[tenants.Acme_Co]\nname = "x"\n', "tenants.Acme_Co:"),
    # Stringee posts the project id as a number: a name could never match an event
    "stringee project name": (
        '[tenants.acme]\nname = "x"\n[tenants.acme.stringee]\nproject_id = "acme-project"\n'
        'signing_secret_env = "ACME_SIGNING"\n',
        "tenants.acme.stringee.project_id: a Stringee project id is a number",
    ),
    "unknown key": ('[tenants.acme]\nname = "x"\ncolour = "red"\n', "tenants.acme.colour:"),
    "bad number": (
        '[tenants.acme]\nname = "x"\n[tenants.acme.numbers."+84123"]\n',
        'tenants.acme.numbers."+84123":',
    ),
    "bad duration": (
        '[tenants.acme]\nname = "x"\nretention = "ninety days"\n',
        "tenants.acme.retention:",
    ),
    "retention above max": (
        '[tenants.acme]\nname = "x"\nretention_max = "365d"\n'
        '[tenants.acme.queues.sales]\nretention = "400d"\n',
        "tenants.acme.queues.sales.retention: 400d is above the tenant's retention_max 365d",
    ),
    "retention below min": (
        '[tenants.acme]\nname = "x"\nretention_min = "30d"\nretention = "7d"\n',
        "tenants.acme.retention: 1w is below",
    ),
    "number claimed twice": (
        '[tenants.acme]\nname = "x"\n[tenants.acme.numbers."+842873009999"]\n'
        '[tenants.beta]\nname = "y"\n[tenants.beta.numbers."+842873009999"]\n',
        "tenants.beta.numbers.\"+842873009999\": the number is also claimed by tenant 'acme'",
    ),
    "undefined queue": (
        '[tenants.acme]\nname = "x"\n[tenants.acme.numbers."+842873009999"]\nqueue = "sales"\n',
        'tenants.acme.numbers."+842873009999".queue: no queue named "sales"',
    ),
    "plain auth token": (
        '[tenants.acme]\nname = "x"\n[tenants.acme.twilio]\n'
        'account_sid = "AC0123456789abcdef0123456789abcdef"\nauth_token = "hunter2"\n',
        "tenants.acme.twilio.auth_token: secrets are never written in a tenant file",
    ),
    "plain api key secret": (
        '[tenants.acme]\nname = "x"\n[tenants.acme.stringee]\nproject_id = "p"\n'
        'api_key_secret = "s"\nsigning_secret_env = "X"\n',
        "tenants.acme.stringee.api_key_secret: secrets are never written",
    ),
    "plain signing secret": (
        '[tenants.acme]\nname = "x"\n[tenants.acme.stringee]\nproject_id = "p"\n'
        'signing_secret = "s"\n',
        "tenants.acme.stringee.signing_secret: secrets are never written",
    ),
    "plain password": (
        '[tenants.acme]\nname = "x"\n[tenants.acme.storage]\nbucket = "b-1"\ndb_password = "s"\n',
        "tenants.acme.storage.db_password: secrets are never written",
    ),
    "storage region typo": (
        '[tenants.acme]\nname = "x"\n[tenants.acme.storage]\nbucket = "b-1"\n'
        'region = "eu west 1"\n',
        "tenants.acme.storage.region: not an AWS region name",
    ),
    "default's policy": (
        '[tenants.default]\nname = "Default"\nretention = "30d"\n',
        "tenants.default.retention: the default tenant's policy",
    ),
    "not toml": ("[tenants.acme\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
async def test_an_invalid_file_changes_nothing_and_names_the_key(
    case: str, database_url: str, db: Conn, tmp_path: Path
) -> None:
    # a valid tenant first in the same file: it must not be written either
    text, expected = BAD_FILES[case]
    good = '[tenants.good-one]\nname = "Good"\n[tenants.good-one.queues.q]\n'
    path = write(tmp_path, good + text)
    before = await dump(db)
    result = run_cli(database_url, "tenant", "apply", path)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "hunter2" not in result.stderr
    assert await dump(db) == before


async def test_a_number_of_a_tenant_the_file_does_not_name_is_refused(
    database_url: str, db: Conn, tmp_path: Path
) -> None:
    assert run_cli(database_url, "tenant", "apply", write(tmp_path, ACME)).returncode == 0
    before = await dump(db)
    steal = '[tenants.gamma]\nname = "G"\n[tenants.gamma.numbers."+842873008888"]\n'
    result = run_cli(database_url, "tenant", "apply", write(tmp_path, steal, "steal.toml"))
    assert result.returncode == 1
    assert (
        "tenants.gamma.numbers.\"+842873008888\": the number belongs to tenant 'beta'"
        in result.stderr
    )
    assert await dump(db) == before


async def test_a_number_moves_between_two_tenants_of_one_file(
    database_url: str, db: Conn, tmp_path: Path
) -> None:
    assert run_cli(database_url, "tenant", "apply", write(tmp_path, ACME)).returncode == 0
    moved = (
        '[tenants.acme]\nname = "ACME"\n'
        '[tenants.beta]\nname = "Beta Bank"\n[tenants.beta.numbers."+842873009999"]\n'
    )
    result = run_cli(database_url, "tenant", "apply", write(tmp_path, moved, "moved.toml"))
    assert result.returncode == 0, result.stderr
    owners = {r["number"]: r["tenant_id"] for r in (await dump(db))["tenant_numbers"]}
    assert owners == {"+842873009999": "beta"}


async def test_a_number_in_callvault_config_belongs_to_default(
    database_url: str, db: Conn, tmp_path: Path
) -> None:
    config = tmp_path / "callvault.toml"
    config.write_text('[numbers."+842873001234"]\nconsent_mode = "explicit"\n')
    text = '[tenants.acme]\nname = "A"\n[tenants.acme.numbers."+842873001234"]\n'
    result = run_cli(
        database_url,
        "tenant",
        "apply",
        write(tmp_path, text),
        env_overrides={"CALLVAULT_CONFIG": str(config)},
    )
    assert result.returncode == 1
    assert "belongs to tenant 'default' ([numbers] in CALLVAULT_CONFIG)" in result.stderr
    assert (await dump(db))["tenant_numbers"] == []


async def test_default_can_be_renamed_but_keeps_an_empty_policy(
    database_url: str, db: Conn, tmp_path: Path
) -> None:
    text = '[tenants.default]\nname = "Our contact centre"\n'
    result = run_cli(database_url, "tenant", "apply", write(tmp_path, text))
    assert result.returncode == 0, result.stderr
    row = await db.fetchrow("SELECT name, policy FROM tenants WHERE id = 'default'")
    assert (row["name"], row["policy"]) == ("Our contact centre", {})
