"""The brake on guessing tokens, behind the shipped nginx (issue 12, item 9): failures are
counted per client address (taken from X-Forwarded-For only when the peer is a trusted proxy),
a valid token is never refused for others' failures, and 429 says when to come back."""

from __future__ import annotations

import ipaddress
from typing import Any

import aiohttp
import pytest

from service.auth.http import FAILURE_LIMIT
from service.config import load_settings
from service.errors import ConfigError
from tests.conftest import Service

HOLDS = "/api/holds"


async def _get(
    http: aiohttp.ClientSession, service: Service, token: str, forwarded_for: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    async with http.get(service.base_url + HOLDS, headers=headers) as resp:
        return resp.status, resp.headers


async def test_a_valid_token_works_after_ten_bad_ones_from_its_address(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    for _ in range(FAILURE_LIMIT):
        assert (await _get(http, service, "cv_wrong"))[0] == 401
    status, headers = await _get(http, service, "cv_wrong")
    assert status == 429
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert (await _get(http, service, tokens["compliance"]))[0] == 200


async def test_clients_behind_a_trusted_proxy_are_braked_separately(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    await service.reconfigure(trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    # nginx appends the address it saw to whatever the client sent
    guesser = "198.51.100.1, 203.0.113.66"
    for _ in range(FAILURE_LIMIT):
        assert (await _get(http, service, "cv_wrong", guesser))[0] == 401
    assert (await _get(http, service, "cv_wrong", guesser))[0] == 429
    # a forged left part does not move the guesser to another bucket
    assert (await _get(http, service, "cv_wrong", "192.0.2.9, 203.0.113.66"))[0] == 429
    # another client behind the same proxy still gets a plain 401
    assert (await _get(http, service, "cv_wrong", "203.0.113.77"))[0] == 401


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    await service.reconfigure(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    for i in range(FAILURE_LIMIT):
        assert (await _get(http, service, "cv_wrong", f"203.0.113.{i}"))[0] == 401
    # a fresh X-Forwarded-For from the same peer does not buy more guesses
    assert (await _get(http, service, "cv_wrong", "203.0.113.200"))[0] == 429


def test_trusted_proxies_setting_takes_addresses_and_blocks() -> None:
    settings = load_settings({"CALLVAULT_TRUSTED_PROXIES": "10.0.0.5, 172.16.0.0/12 fd00::/8"})
    assert [str(n) for n in settings.trusted_proxies] == [
        "10.0.0.5/32",
        "172.16.0.0/12",
        "fd00::/8",
    ]
    with pytest.raises(ConfigError, match=r"^CALLVAULT_TRUSTED_PROXIES: "):
        load_settings({"CALLVAULT_TRUSTED_PROXIES": "10.0.0.5, nginx"})
