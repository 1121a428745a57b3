"""Every ``callvault`` error is one line on stderr that names what it is about (the file, the
setting, the database or store, the id), exits non-zero, shows no traceback and never prints a
password, as an operator sees it when a deployment is misconfigured."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Protocol

import pytest

from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, SECRET_KEY, db_url, free_port, service_role

PASSWORD = "hunter2-not-for-stderr"


class Cli(Protocol):
    def __call__(
        self, database_url: str, *argv: str, env_overrides: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def run_cli(tmp_path: Path) -> Cli:
    """``callvault ARGV`` with production-shaped settings (secrets set, so nothing is generated,
    a home of its own, never ./var) and the database URL given, or none if empty."""

    def run(
        database_url: str, *argv: str, env_overrides: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
        env.update(
            CALLVAULT_HOME=str(tmp_path / "home"),
            CALLVAULT_SECRET_KEY=SECRET_KEY,
            CALLVAULT_TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            CALLVAULT_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        )
        if database_url:
            env["CALLVAULT_DATABASE_URL"] = database_url
        env.update(env_overrides or {})
        return subprocess.run(
            [sys.executable, "-m", "service", *argv],
            env=env,
            cwd=tmp_path,
            text=True,
            capture_output=True,
            timeout=120,
            check=False,
        )

    return run


def _one_line(result: subprocess.CompletedProcess[str], *named: str, code: int = 1) -> str:
    """The single error line, checked for what every CLI error must be."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    line = lines[0]
    assert line.startswith("callvault"), line
    assert ": error: " in line, line
    for thing in named:
        assert thing in line, f"{thing!r} not named in {line!r}"
    assert PASSWORD not in result.stderr + result.stdout
    return line


def _unreachable() -> tuple[str, str]:
    """A database URL with a password that nothing listens on, and how it may be named."""
    port = free_port()
    return (
        f"postgresql://callvault:{PASSWORD}@127.0.0.1:{port}/callvault",
        f"postgresql://callvault@127.0.0.1:{port}/callvault",
    )


# --- configuration: the file and the key ---------------------------------------------------


def test_a_missing_config_file_is_named(run_cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "callvault.toml"
    result = run_cli("", "migrate", env_overrides={"CALLVAULT_CONFIG": str(missing)})
    _one_line(result, "CALLVAULT_CONFIG", str(missing), code=2)


def test_invalid_toml_names_the_file_and_the_line(run_cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "callvault.toml"
    bad.write_text('port = 8080\nconsent_mode = "implied\n')
    result = run_cli("", "ledger", "verify", env_overrides={"CALLVAULT_CONFIG": str(bad)})
    _one_line(result, str(bad), "line 2", code=2)


def test_a_config_path_that_is_a_folder_is_named(run_cli: Cli, tmp_path: Path) -> None:
    result = run_cli("", "migrate", env_overrides={"CALLVAULT_CONFIG": str(tmp_path)})
    _one_line(result, str(tmp_path), "directory")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CALLVAULT_PORT", "eighty"),
        ("CALLVAULT_RETENTION", "forever"),
        ("CALLVAULT_S3_ENDPOINT_URL", "minio:9000"),
        ("CALLVAULT_COLOUR", "blue"),  # not a setting at all
    ],
)
def test_an_invalid_environment_value_names_the_variable(
    run_cli: Cli, name: str, value: str
) -> None:
    result = run_cli("", "migrate", env_overrides={name: value})
    _one_line(result, name, code=2)


def test_a_database_url_that_is_not_postgresql_is_named_without_its_password(run_cli: Cli) -> None:
    result = run_cli(f"mysql://root:{PASSWORD}@db/callvault", "migrate")
    _one_line(result, "CALLVAULT_DATABASE_URL", code=2)


# --- the database: its URL, never its password ---------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["migrate"], ["ledger", "verify"], ["hold", "list"], ["purge", "--dry-run"]],
    ids=" ".join,
)
def test_an_unreachable_database_is_named_without_its_password(
    run_cli: Cli, command: list[str]
) -> None:
    url, shown = _unreachable()
    _one_line(run_cli(url, *command), shown)


def test_a_password_given_as_a_url_option_is_not_printed(run_cli: Cli) -> None:
    port = free_port()
    url = f"postgresql://callvault@127.0.0.1:{port}/callvault?password={PASSWORD}&sslmode=disable"
    line = _one_line(run_cli(url, "migrate"), f"127.0.0.1:{port}/callvault", "sslmode=disable")
    assert "password" not in line


def test_a_database_that_does_not_exist_is_named(run_cli: Cli, pg_base_url: str) -> None:
    url = db_url(pg_base_url, "no_such_database")
    _one_line(run_cli(url, "ledger", "verify"), "no_such_database", "does not exist")


async def test_an_unmigrated_database_is_named(run_cli: Cli, pg_base_url: str) -> None:
    import asyncpg

    name = "unmigrated_" + uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(pg_base_url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
        result = run_cli(db_url(pg_base_url, name), "hold", "list")
        _one_line(result, f"database postgresql://postgres@/{name}", "does not exist")
    finally:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()


def test_an_unusable_home_folder_is_named(run_cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("a file, not a folder")
    result = run_cli("", "migrate", env_overrides={"CALLVAULT_HOME": str(home)})
    _one_line(result, str(home))


# --- the store -------------------------------------------------------------------------------


async def test_an_unreachable_store_is_named(run_cli: Cli, database_url: str) -> None:
    import asyncpg

    from service.personal.numbers import PhoneVault

    # a call of the number (a request for a number with no calls never reaches the store)
    vault, conn = PhoneVault(SECRET_KEY), await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT set_config('callvault.tenant', 'default', false)")
        await conn.execute(
            "INSERT INTO calls (platform, external_id, caller_enc, caller_hash, policy) "
            "VALUES ('twilio', 'CA' || md5(random()::text), $1, $2, '{}')",
            vault.encrypt("+84901234561"),
            vault.lookup_hash("+84901234561"),
        )
    finally:
        await conn.close()
    endpoint = f"http://127.0.0.1:{free_port()}"
    result = run_cli(
        database_url,
        "dsar",
        "access",
        "--phone",
        "+84901234561",
        env_overrides={
            "CALLVAULT_S3_BUCKET": "callvault-recordings",
            "CALLVAULT_S3_ENDPOINT_URL": endpoint,
        },
    )
    _one_line(result, "callvault-recordings", endpoint)


# --- arguments: the id, the flag -------------------------------------------------------------


def test_a_call_id_that_is_not_an_id_is_named(run_cli: Cli) -> None:
    url, _ = _unreachable()
    _one_line(run_cli(url, "ledger", "verify", "--call", "not-a-uuid"), "--call", "not-a-uuid")


async def test_releasing_an_unknown_hold_names_it(run_cli: Cli, database_url: str) -> None:
    hold = str(uuid.uuid4())
    _one_line(run_cli(database_url, "hold", "release", hold), hold)
    _one_line(run_cli(database_url, "hold", "release", "h-42"), "h-42")


async def test_revoking_an_unknown_token_names_it(run_cli: Cli, database_url: str) -> None:
    token = str(uuid.uuid4())
    _one_line(run_cli(database_url, "token", "revoke", token), token)


async def test_a_malformed_phone_names_the_flag_not_the_value(
    run_cli: Cli, database_url: str
) -> None:
    line = _one_line(run_cli(database_url, "dsar", "access", "--phone", "0987 garbage"), "phone")
    assert "0987" not in line  # it may be someone's number: never echoed


async def test_mark_outbound_refuses_a_from_that_is_not_a_number(
    run_cli: Cli, database_url: str
) -> None:
    # It used to answer "marked 0 calls from *** as outbound" with exit 0: a typo looked like
    # a repair that had found nothing to repair.
    result = run_cli(database_url, "calls", "mark-outbound", "--from", "028 7300 123x")
    _one_line(result, "--from", "E.164")
    assert result.stdout == ""


async def test_an_access_bundle_out_path_in_no_folder_is_named_before_the_request(
    run_cli: Cli, database_url: str, tmp_path: Path
) -> None:
    # It used to create and complete the request, then blame the object store ("local store
    # in ...: No such file or directory") for the folder the operator mistyped.
    out = tmp_path / "no-such-folder" / "bundle.zip"
    result = run_cli(database_url, "dsar", "access", "--phone", "+84901234567", "--out", str(out))
    line = _one_line(result, "--out", str(out.parent))
    assert "store" not in line
    assert result.stdout == ""  # no request was made
    folder = run_cli(
        database_url, "dsar", "access", "--phone", "+84901234567", "--out", str(tmp_path)
    )
    _one_line(folder, "--out", "folder")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["hold", "release"], ["hold release", "id"]),
        (["jobs", "retry", "seven"], ["jobs retry", "'seven'"]),
        (["token", "create", "--name", "x", "--role", "god"], ["--role", "'god'"]),
        (["no-such-command"], ["'no-such-command'"]),
    ],
)
def test_usage_errors_are_one_line_naming_the_argument(argv: list[str], named: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _one_line(result, *named, code=2)


def test_an_unwritable_prompts_folder_is_named(run_cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = run_cli("", "prompts", "build", "--out", str(blocker / "prompts"))
    _one_line(result, str(blocker))


# --- serve: the same one line, among its JSON logs -------------------------------------------


def _serve_error(result: subprocess.CompletedProcess[str], *named: str) -> str:
    """``serve`` logs JSON lines on stderr too; its error is the one line that is not a log."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if not ln.startswith("{")]
    assert len(errors) == 1 and errors[0].startswith("callvault: error: "), result.stderr
    assert result.returncode == 1, result.stderr
    for thing in named:
        assert thing in errors[0], f"{thing!r} not named in {errors[0]!r}"
    assert PASSWORD not in result.stderr
    return errors[0]


def test_serve_names_an_unreachable_database(run_cli: Cli) -> None:
    url, shown = _unreachable()
    _serve_error(run_cli(url, "serve", env_overrides={"CALLVAULT_PORT": str(free_port())}), shown)


async def test_serve_names_an_address_already_in_use(
    run_cli: Cli, database_url: str, built_prompts: Path, tmp_path: Path
) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "prompts").symlink_to(built_prompts, target_is_directory=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            service_role(database_url), "serve", env_overrides={"CALLVAULT_PORT": str(port)}
        )
    _serve_error(result, f"'127.0.0.1', {port}")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://cv:pw@db:5432/cv", "postgresql://cv@db:5432/cv"),
        ("postgresql://:pw@db/cv", "postgresql://db/cv"),
        (
            "postgresql://cv@db/cv?password=pw&sslmode=require",
            "postgresql://cv@db/cv?sslmode=require",
        ),
        ("postgresql://cv@/cv?host=/run/pg&sslpassword=pw", "postgresql://cv@/cv?host=/run/pg"),
        ("https://minio:9000/bucket", "https://minio:9000/bucket"),
        ("postgresql://cv:pw@[::1/cv", "postgresql://cv@[::1/cv"),  # unparseable: still hidden
    ],
)
def test_urls_lose_their_password_and_nothing_else(url: str, shown: str) -> None:
    from service.db.redact import redact_urls, url_without_password

    assert url_without_password(url) == shown
    assert redact_urls(f"cannot reach {url}: refused") == f"cannot reach {shown}: refused"
