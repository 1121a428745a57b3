"""Phone numbers: encrypted at rest, keyed hash for lookup, masked for display."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from service.personal_data import PhoneVault, mask_phone, normalise_phone

KEY = "a-secret-key-of-at-least-32-characters!!"


def test_encryption_round_trip_with_fresh_nonces() -> None:
    vault = PhoneVault(KEY)
    a, b = vault.encrypt("+84901234678"), vault.encrypt("+84901234678")
    assert a != b
    assert vault.decrypt(a) == vault.decrypt(b) == "+84901234678"
    assert b"84901234678" not in a


def test_another_key_cannot_read_or_match() -> None:
    vault, other = PhoneVault(KEY), PhoneVault(KEY + "x")
    with pytest.raises(InvalidTag):
        other.decrypt(vault.encrypt("+84901234678"))
    assert vault.lookup_hash("+84901234678") != other.lookup_hash("+84901234678")


def test_lookup_hash_matches_spellings_of_one_number() -> None:
    vault = PhoneVault(KEY)
    assert (
        vault.lookup_hash("+84 90 123 4678")
        == vault.lookup_hash("0084-901-234-678")
        == vault.lookup_hash("+84901234678")
    )
    assert vault.lookup_hash("+84901234679") != vault.lookup_hash("+84901234678")


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+84901234678", "+84 9** *** 678"),
        ("+84 28 7300 1234", "+84 2** **** 234"),
        ("+14155550123", "+1 4** **** 123"),
        ("+85512345678", "+855 1** ** 678"),
        ("anonymous", "***"),
    ],
)
def test_masking(number: str, masked: str) -> None:
    assert mask_phone(number) == masked


def test_normalise_keeps_non_numbers() -> None:
    assert normalise_phone("client:alice") == "client:alice"
