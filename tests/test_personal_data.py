"""Phone numbers: encrypted at rest, keyed hash for lookup, masked for display."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given
from hypothesis import strategies as st

from retention.holds import check_phone
from service.personal.numbers import (
    PhoneVault,
    mask_phone,
    normalise_phone,
    parse_e164,
    parse_platform_number,
)
from service.platforms.stringee.accounts import e164

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


@pytest.mark.parametrize(
    ("raw", "platform", "typed"),
    [
        ("+84901234567", "+84901234567", "+84901234567"),
        ("+84 90 123 4567", "+84901234567", "+84901234567"),
        ("0084 901 234 567", "+84901234567", "+84901234567"),
        ("0901234567", "+84901234567", None),  # national: Vietnam's on a platform only
        ("028 7300 1234", "+842873001234", None),
        ("+44 20 7946 0958", "+442079460958", "+442079460958"),
        ("tel:+84901234567", "+84901234567", None),
        ("+8490123456789012", None, None),  # too long for any country
        ("0901abc567", None, None),
        ("call me on 0901234567", None, None),  # phonenumbers alone would find it
        ("anonymous", None, None),
        ("", None, None),
    ],
)
def test_numbers_are_parsed_with_phonenumbers(
    raw: str, platform: str | None, typed: str | None
) -> None:
    assert parse_platform_number(raw) == platform
    assert parse_e164(raw) == typed


def test_platform_spellings_of_one_number_normalise_alike() -> None:
    spellings = ["+84901234567", "0901234567", "090-123-4567", "(090) 123 4567", "0084901234567"]
    assert {normalise_phone(s) for s in spellings} == {"+84901234567"}
    # what no parse accepts is kept as it was (and so is its lookup hash)
    assert normalise_phone("1001") == "1001"
    assert normalise_phone("+840901234567") == "+84901234567"
    # Stringee: international without the "+", or national
    assert e164("84901234567") == e164("0901234567") == e164("+84901234567") == "+84901234567"
    assert e164("user-42") == "user-42"


# E.164-shaped numbers phonenumbers finds impossible (no such range in its metadata)
IMPOSSIBLE = ["+38012345678901", "+999123456789"]


@pytest.mark.parametrize("number", IMPOSSIBLE)
def test_numbers_intake_keeps_as_e164_are_numbers_holds_and_requests_take(number: str) -> None:
    """Intake stores these as E.164 (the E.164-shape fallback); holds and requests refused
    them as bad_phone, so such a caller could be neither held nor erased."""
    assert parse_platform_number(number) is None  # not phonenumbers' doing
    vault = PhoneVault(KEY)
    for spelling in (number, f"tel:{number}", f"00{number[1:]}", f"{number[:4]} {number[4:]}"):
        assert normalise_phone(spelling) == number, spelling
    for typed in (number, f"00{number[1:]}", f"{number[:4]} {number[4:]}"):
        assert check_phone(typed) == number, typed
        assert vault.lookup_hash(check_phone(typed)) == vault.lookup_hash(number)


@given(st.from_regex(r"(tel:)?\+[1-9][0-9]{6,14}", fullmatch=True))
def test_whatever_intake_stores_as_e164_a_hold_or_request_names_alike(raw: str) -> None:
    stored = normalise_phone(raw)
    assert stored.startswith("+")
    assert check_phone(stored) == stored


@given(st.from_regex(r"(tel:)?(\+|00|0)?[1-9][0-9 ]{3,15}", fullmatch=True))
def test_normalising_reads_its_own_result_unchanged(raw: str) -> None:
    """The voice webhook hashes the number it normalised without reading it again
    (``lookup_hashes_of_normal``); a hold names it by what ``lookup_hash`` reads from it. Both
    agree only if a normalised number reads as itself."""
    once = normalise_phone(raw)
    assert normalise_phone(once) == once
    vault = PhoneVault(KEY)
    assert vault.lookup_hashes_of_normal(once) == vault.lookup_hashes(raw)
    assert vault.lookup_hashes_of_normal(once)[0] == vault.lookup_hash(once)
