"""Configuration: environment over TOML, per-number and per-queue policy, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from service.config import Policy, Settings, load_settings, parse_duration, with_generated_secrets
from service.errors import ConfigError


def test_defaults_without_any_configuration() -> None:
    s = load_settings({})
    assert (s.host, s.port, s.public_url) == ("127.0.0.1", 8080, "http://127.0.0.1:8080")
    assert s.home == Path("./var")
    assert s.defaults.consent_mode == "implied" and s.defaults.language == "vi-VN"
    assert s.twilio_api_url == "https://api.twilio.com"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90d", 90 * 86400), ("12h", 43200), ("30s", 30), ("5m", 300)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration("X", text) == seconds


def test_toml_policies_and_environment_precedence(tmp_path: Path) -> None:
    path = tmp_path / "callvault.toml"
    path.write_text(
        'port = 9000\nconsent_mode = "explicit"\ncontinue_url = "https://cc.example/next"\n'
        '[queues.english]\nlanguage = "en-US"\nconsent_mode = "implied"\n'
        '[numbers."+842873001234"]\nqueue = "english"\ncontinue_url = "https://cc.example/en"\n'
        '[numbers."+842873005555"]\nnever_record = true\n'
    )
    s = load_settings({"CALLVAULT_CONFIG": str(path), "CALLVAULT_PORT": "9100"})
    assert s.port == 9100  # the environment wins over the file
    assert s.defaults.consent_mode == "explicit"
    en = s.policy_for("+842873001234")
    assert (en.queue, en.language, en.consent_mode, en.continue_url) == (
        "english",
        "en-US",
        "implied",
        "https://cc.example/en",
    )
    assert s.policy_for("+842873005555").never_record
    assert s.policy_for("+849999999").consent_mode == "explicit"
    assert s.policy_for(None, "english").language == "en-US"


@pytest.mark.parametrize(
    ("env", "toml", "key"),
    [
        ({"CALLVAULT_PORT": "eighty"}, "", "CALLVAULT_PORT"),
        ({"CALLVAULT_CONSENT_MODE": "maybe"}, "", "CALLVAULT_CONSENT_MODE"),
        ({"CALLVAULT_RETENTION": "forever"}, "", "CALLVAULT_RETENTION"),
        ({"CALLVAULT_PUBLIC_URL": "ftp://x"}, "", "CALLVAULT_PUBLIC_URL"),
        ({"CALLVAULT_SECRET_KEY": "short"}, "", "CALLVAULT_SECRET_KEY"),
        ({"CALLVAULT_CONSENT_MOD": "implied"}, "", "CALLVAULT_CONSENT_MOD"),
        ({}, 'colour = "red"\n', "colour"),
        ({}, '[queues.q]\nlanguage = "fr-FR"\n', "queues.q.language"),
        ({}, '[numbers."0901"]\nnever_record = true\n', "numbers.0901"),
        ({}, '[numbers."+842873001234"]\nqueue = "nope"\n', "numbers.+842873001234.queue"),
        ({}, "port = [", "CALLVAULT_CONFIG"),
    ],
)
def test_invalid_configuration_names_the_key(
    tmp_path: Path, env: dict[str, str], toml: str, key: str
) -> None:
    if toml:
        path = tmp_path / "c.toml"
        path.write_text(toml)
        env = {**env, "CALLVAULT_CONFIG": str(path)}
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.message.startswith(key + ":") or info.value.message.startswith(key + " ")


def test_serve_with_bad_configuration_stops_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env.update(CALLVAULT_HOME=str(tmp_path), CALLVAULT_CONSENT_MODE="sometimes")
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve"],
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "callvault: error: CALLVAULT_CONSENT_MODE: must be 'implied' or 'explicit', got 'sometimes'"
    ]


def test_generated_local_secrets_are_created_once_and_private(tmp_path: Path) -> None:
    s = load_settings({"CALLVAULT_HOME": str(tmp_path)})
    first = with_generated_secrets(s)
    second = with_generated_secrets(s)
    assert first.secret_key and first.twilio_auth_token
    assert (first.secret_key, first.twilio_auth_token) == (
        second.secret_key,
        second.twilio_auth_token,
    )
    assert (tmp_path / "generated-secrets.toml").stat().st_mode & 0o777 == 0o600
    given = with_generated_secrets(
        load_settings({"CALLVAULT_HOME": str(tmp_path), "CALLVAULT_SECRET_KEY": "s" * 40})
    )
    assert given.secret_key == "s" * 40


def test_every_setting_can_be_given_in_the_environment(tmp_path: Path) -> None:
    env = {
        "CALLVAULT_HOME": str(tmp_path),
        "CALLVAULT_HOST": "0.0.0.0",
        "CALLVAULT_PORT": "9000",
        "CALLVAULT_PUBLIC_URL": "https://cv.example.vn/",
        "CALLVAULT_LOG_LEVEL": "debug",
        "CALLVAULT_DATABASE_URL": "postgresql://u@db/callvault",
        "CALLVAULT_S3_BUCKET": "b",
        "CALLVAULT_S3_ENDPOINT_URL": "https://s3.example.vn",
        "CALLVAULT_S3_REGION": "hn-1",
        "CALLVAULT_S3_SSE": "aws:kms",
        "CALLVAULT_S3_KMS_KEY_ID": "k1",
        "CALLVAULT_S3_THREADS": "4",
        "CALLVAULT_SECRET_KEY": "s" * 40,
        "CALLVAULT_TWILIO_ACCOUNT_SID": "AC1",
        "CALLVAULT_TWILIO_AUTH_TOKEN": "t",
        "CALLVAULT_TWILIO_API_URL": "http://127.0.0.1:1",
        "CALLVAULT_CONSENT_MODE": "explicit",
        "CALLVAULT_LANGUAGE": "en-US",
        "CALLVAULT_CONTINUE_URL": "https://ivr.example.vn/next",
        "CALLVAULT_NEVER_RECORD": "no",
        "CALLVAULT_RETENTION": "30d",
        "CALLVAULT_PURGE_INTERVAL": "1m",
        "CALLVAULT_GATHER_TIMEOUT": "5s",
        "CALLVAULT_GATHER_RETRIES": "2",
        "CALLVAULT_MAX_BODY_BYTES": "2048",
        "CALLVAULT_WORKERS": "3",
        "CALLVAULT_WORKER_NICE": "0",
        "CALLVAULT_JOB_MAX_ATTEMPTS": "5",
        "CALLVAULT_JOB_LEASE": "20s",
        "CALLVAULT_JOB_BACKOFF": "3s",
        "CALLVAULT_JOB_BACKOFF_CAP": "5m",
        "CALLVAULT_MAX_RECORDING_BYTES": "1048576",
        "CALLVAULT_DOWNLOAD_TIMEOUT": "1h",
    }
    s = load_settings(env)
    assert (s.host, s.port, s.public_url, s.log_level) == (
        "0.0.0.0",
        9000,
        "https://cv.example.vn",
        "DEBUG",
    )
    assert (s.s3_bucket, s.s3_sse, s.s3_kms_key_id, s.s3_threads) == ("b", "aws:kms", "k1", 4)
    assert (s.workers, s.worker_nice, s.job_max_attempts, s.job_lease_s) == (3, 0, 5, 20)
    assert (s.job_backoff_base_s, s.job_backoff_cap_s, s.download_timeout_s) == (3, 300, 3600)
    assert (s.max_body_bytes, s.max_recording_bytes, s.purge_interval_s) == (2048, 1048576, 60)
    d = s.defaults
    assert (d.consent_mode, d.language, d.retention_s, d.gather_timeout_s, d.gather_retries) == (
        "explicit",
        "en-US",
        30 * 86400,
        5,
        2,
    )


def test_a_shared_database_requires_real_secrets(tmp_path: Path) -> None:
    settings = load_settings(
        {"CALLVAULT_HOME": str(tmp_path), "CALLVAULT_DATABASE_URL": "postgresql://db/cv"}
    )
    with pytest.raises(ConfigError) as info:
        with_generated_secrets(settings)
    assert info.value.message.startswith("CALLVAULT_SECRET_KEY: required")
    assert not (tmp_path / "generated-secrets.toml").exists()


def _policy_file(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "callvault.toml"
    path.write_text(
        'consent_mode = "explicit"\n'
        '[queues.english]\nlanguage = "en-US"\n'
        '[queues.sales]\nconsent_mode = "implied"\n'
        '[numbers."+842873001234"]\nqueue = "english"\nretention = "30d"\n'
        '[numbers."+842873002222"]\nqueue = "sales"\n'
    )
    return {"CALLVAULT_CONFIG": str(path)}


def test_policies_are_resolved_at_load_and_only_looked_up_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = load_settings(_policy_file(tmp_path))

    def no_merging(*args: object, **kwargs: object) -> None:
        raise AssertionError("a policy was merged after load")

    monkeypatch.setattr("service.config.replace", no_merging)
    asks = [
        ("+842873001234", None),
        ("+842873001234", "sales"),  # the URL's queue wins over the number's own
        ("+842873002222", None),
        ("+842873002222", "english"),
        ("+849999999", "english"),
        (None, "sales"),
        (None, None),
    ]
    first = [s.policy_for(called, queue) for called, queue in asks]
    assert [s.policy_for(called, queue) for called, queue in asks] == first
    assert all(a is b for a, b in zip(first, [s.policy_for(c, q) for c, q in asks], strict=True))
    own, other_queue, by_queue, switched, unknown_number, sales, defaults = first
    assert (own.queue, own.language, own.retention_s) == ("english", "en-US", 30 * 86400)
    assert (other_queue.queue, other_queue.language, other_queue.consent_mode) == (
        "sales",
        "vi-VN",
        "implied",
    )
    assert other_queue.retention_s == 30 * 86400  # the number's own key wins over both
    assert by_queue is sales and switched is unknown_number  # no keys of its own: the queue's
    assert defaults is s.defaults and defaults.consent_mode == "explicit"
    with pytest.raises(ConfigError, match=r"^queue: unknown queue 'nope'"):
        s.policy_for("+842873001234", "nope")  # the webhook falls back to the number's policy


def test_a_bad_policy_table_fails_when_settings_are_made_not_when_a_call_comes(
    tmp_path: Path,
) -> None:
    s = load_settings(_policy_file(tmp_path))
    with pytest.raises(ConfigError, match=r"^numbers\.\+842873009999\.queue: unknown queue"):
        replace(s, numbers={**s.numbers, "+842873009999": {"queue": "nope"}})
    with pytest.raises(ConfigError, match=r"^queues\.q\.retention: expected a duration"):
        Settings(queues={"q": {"retention": "forever"}})
    with pytest.raises(ConfigError, match=r"^queues\.q\.queue: unknown key"):
        Settings(queues={"q": {"queue": "english"}})
    added = replace(s, queues={**s.queues, "spanish": {"consent_mode": "explicit"}})
    assert added.policy_for(None, "spanish").queue == "spanish"  # replace() resolves again


def test_the_environment_wins_even_over_an_invalid_file_value(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('port = "eighty"\n')
    with pytest.raises(ConfigError, match=r"^port: must be a whole number from 1 to 65535"):
        load_settings({"CALLVAULT_CONFIG": str(path)})
    env = {"CALLVAULT_CONFIG": str(path), "CALLVAULT_PORT": "9100"}
    assert load_settings(env).port == 9100
    path.write_text("host = 5\n")  # typed: a number is not a host name
    with pytest.raises(ConfigError, match=r"^host: input should be a valid string"):
        load_settings({**env, "CALLVAULT_HOST": ""})  # an empty variable counts as unset


def test_secrets_are_never_shown(tmp_path: Path) -> None:
    secret = "s3cr3t-" * 6
    s = load_settings({"CALLVAULT_SECRET_KEY": secret, "CALLVAULT_METRICS_TOKEN": "m-token"})
    assert s.secret_key == secret and s.metrics_token == "m-token"
    assert secret not in repr(s) and "m-token" not in repr(s)
    with pytest.raises(ConfigError) as info:
        load_settings({"CALLVAULT_PREVIOUS_SECRET_KEY": "short-but-secret"})
    assert info.value.message == (
        "CALLVAULT_PREVIOUS_SECRET_KEY: must be at least 32 characters of random text"
    )


def test_retention_source_is_the_level_that_set_retention(tmp_path: Path) -> None:
    """Issue 15 item 5: a call's policy says whether its retention came from the tenant's
    defaults, its queue or its number (stored with the call, then with its recordings)."""
    s = Settings(
        queues={"sales": {"retention": "30d"}, "plain": {"language": "en-US"}},
        numbers={
            "+842873005555": {"queue": "sales"},
            "+842873006666": {"queue": "sales", "retention": "7d"},
            "+842873007777": {"queue": "plain"},
            "+842873008888": {"consent_mode": "explicit"},
        },
    )
    sources = {
        called: (p.retention_source, p.retention_s)
        for called in ("+842873005555", "+842873006666", "+842873007777", "+842873008888", None)
        for p in [s.policy_for(called)]
    }
    assert sources == {
        "+842873005555": ("queue", 30 * 86400),
        "+842873006666": ("number", 7 * 86400),
        "+842873007777": ("tenant", 90 * 86400),
        "+842873008888": ("tenant", 90 * 86400),
        None: ("tenant", 90 * 86400),
    }
    # a number's own retention wins over a queue named in the webhook URL, too
    assert s.policy_for("+842873006666", "sales").retention_source == "number"
    assert s.policy_for("+842873008888", "sales").retention_source == "queue"
    # a call's stored policy reads back with its level
    assert Policy(**s.policy_for("+842873005555").as_json()).retention_source == "queue"


def test_metrics_tenants_is_a_bounded_whole_number() -> None:
    assert load_settings({}).metrics_tenants == 100
    assert load_settings({"CALLVAULT_METRICS_TENANTS": "3"}).metrics_tenants == 3
    with pytest.raises(ConfigError, match=r"^CALLVAULT_METRICS_TENANTS: must be a whole number"):
        load_settings({"CALLVAULT_METRICS_TENANTS": "0"})


def test_worker_nice_is_a_niceness_a_process_may_take() -> None:
    assert load_settings({}).worker_nice == 10
    assert load_settings({"CALLVAULT_WORKER_NICE": "19"}).worker_nice == 19
    with pytest.raises(ConfigError, match=r"^CALLVAULT_WORKER_NICE: must be a whole number"):
        load_settings({"CALLVAULT_WORKER_NICE": "-5"})  # raising priority needs privilege


def test_stringee_settings_are_read_from_the_environment_and_checked() -> None:
    scco = '[{"action": "connect", "to": {"type": "internal", "number": "agent_1"}}]'
    s = load_settings(
        {
            "CALLVAULT_STRINGEE_SIGNING_SECRET": "sign-me",
            "CALLVAULT_STRINGEE_API_KEY_SID": "SKabc123456789",
            "CALLVAULT_STRINGEE_API_KEY_SECRET": "key-secret",
            "CALLVAULT_STRINGEE_API_URLS": "https://asia-3.api.stringee.com, https://api.stringee.com/",
            "CALLVAULT_STRINGEE_CONTINUE_SCCO": scco,
        }
    )
    assert (s.stringee_signing_secret, s.stringee_api_key_sid, s.stringee_api_key_secret) == (
        "sign-me",
        "SKabc123456789",
        "key-secret",
    )
    assert s.stringee_api_urls == ("https://asia-3.api.stringee.com", "https://api.stringee.com")
    assert s.stringee_continue_scco == tuple(json.loads(scco))
    assert "sign-me" not in repr(s) and "key-secret" not in repr(s)
    assert load_settings({}).stringee_api_urls == ("https://api.stringee.com",)
    with pytest.raises(ConfigError, match=r"^CALLVAULT_STRINGEE_API_URLS: .*https"):
        load_settings({"CALLVAULT_STRINGEE_API_URLS": "http://api.stringee.com"})
    # recording in the continue actions would bypass the consent step
    with pytest.raises(ConfigError, match=r"^CALLVAULT_STRINGEE_CONTINUE_SCCO: .*record"):
        load_settings({"CALLVAULT_STRINGEE_CONTINUE_SCCO": '[{"action": "record"}]'})
    with pytest.raises(ConfigError, match=r"^CALLVAULT_STRINGEE_CONTINUE_SCCO: .*JSON"):
        load_settings({"CALLVAULT_STRINGEE_CONTINUE_SCCO": "connect please"})
