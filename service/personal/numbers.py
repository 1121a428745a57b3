"""Phone numbers at rest: AES-GCM ciphertext for reading back, HMAC-SHA256 for lookup, a mask for
people who must not see the whole number.

Both keys are derived from ``CALLVAULT_SECRET_KEY`` with HKDF, so one secret serves both purposes
without reusing a key. The ciphertext starts with a format byte so that key rotation can add a
key id later without guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

E164_PATTERN = re.compile(r"^\+[1-9][0-9]{6,14}$")
_FORMAT_V1 = b"\x01"
_NONCE_BYTES = 12
_AAD = b"callvault:phone:v1"


def _derive(secret: str, purpose: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"callvault", info=purpose)
    return hkdf.derive(secret.encode("utf-8"))


# A number in national form (0901234567, as Vietnamese trunks and PBXes deliver it) is read as
# Vietnam's: callvault is for Vietnamese contact centres first. Without it, a caller the PBX
# named as 0901234567 would never be found by an erasure asked for +84901234567.
DEFAULT_REGION = "VN"
_DIALLABLE = re.compile(r"^(?:tel:)?\+?[0-9\s().\-]{1,40}$", re.IGNORECASE)
_TEL = re.compile(r"^tel:", re.IGNORECASE)


def _compact(text: str) -> str:
    compact = re.sub(r"[\s().\-]", "", text)
    return "+" + compact[2:] if compact.startswith("00") else compact


def _parse(text: str, region: str | None) -> str | None:
    """E.164 of a possible phone number written in ``text`` (``phonenumbers``), else None. Only
    digits and separators are read: phonenumbers would find a number inside any text."""
    if not _DIALLABLE.match(text):
        return None
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def _e164_shaped(compact: str) -> str | None:
    """``compact`` if it has the E.164 shape though phonenumbers finds it impossible (a range
    newer than its metadata, a test number): intake keeps such a number in this form (and so
    under this lookup hash) rather than as raw text, and holds and requests must reach it."""
    return compact if E164_PATTERN.match(compact) else None


def parse_e164(raw: str) -> str | None:
    """A number given in international form (``+84 90 123 4567``, ``0084...``) as E.164, or
    None: what people type into holds and data-subject requests, which name E.164 numbers.
    Whatever :func:`normalise_phone` stores as E.164 is accepted here as the same text, so a
    caller intake recorded can always be held or erased."""
    compact = _compact(raw.strip())
    if not compact.startswith("+"):
        return None
    # read as intake reads it (phonenumbers answers some numbers differently without a region)
    found = normalise_phone(compact)
    return found if E164_PATTERN.match(found) else None


def parse_platform_number(raw: str) -> str | None:
    """A number as a telephony platform gives it (international, or national read as
    :data:`DEFAULT_REGION`'s) as E.164, or None if it is not a possible phone number."""
    return _parse(raw.strip(), DEFAULT_REGION)


def normalise_phone(raw: str) -> str:
    """E.164 where the input is a phone number (:func:`parse_platform_number`); anything else a
    platform sends (``anonymous``, ``client:alice``, an extension) is kept as it is."""
    text = raw.strip()
    found = parse_platform_number(text)
    if found == text:
        return found  # already its own E.164: reading it again reads the same (a platform's usual)
    if found is not None:
        # once more from its own E.164: phonenumbers reads some spellings (tel:+31000000) to
        # a number it reads differently again, and a hold typed as what was stored must match
        return parse_platform_number(found) or found
    # what phonenumbers finds impossible but has the E.164 shape is kept as E.164 (a tel: URI's
    # too), the one form parse_e164 gives a hold or request for it
    return _e164_shaped(_compact(_TEL.sub("", text))) or text


def mask_phone(e164: str) -> str:
    """``+84901234678`` → ``+84 9** *** 678``: country code, first digit, last three."""
    number = normalise_phone(e164)
    if not number.startswith("+") or len(number) < 9:
        return "***"
    cc_len = 1 if number[1] in "17" else 2  # NANP and Russia/Kazakhstan; most others use two
    if number[1:3] in _THREE_DIGIT_PREFIXES:
        cc_len = 3
    cc, rest = number[1 : 1 + cc_len], number[1 + cc_len :]
    hidden = "*" * (len(rest) - 4)
    masked = rest[0] + hidden + rest[-3:]
    groups = [masked[0:3], masked[3:-3], masked[-3:]]
    return f"+{cc} " + " ".join(g for g in groups if g)


# Leading two digits of the ITU three-digit country codes (e.g. 855 Cambodia, 856 Laos, 880).
_THREE_DIGIT_PREFIXES = {
    "21",
    "22",
    "23",
    "24",
    "25",
    "26",
    "29",
    "35",
    "37",
    "38",
    "42",
    "50",
    "59",
    "67",
    "68",
    "69",
    "80",
    "85",
    "87",
    "88",
    "96",
    "97",
    "99",
}


def _data_key_context(tenant: str, recording_id: str) -> bytes:
    return f"callvault:data-key:v1:{tenant}:{recording_id}".encode()


class _Keys:
    def __init__(self, secret_key: str) -> None:
        self.aead = AESGCM(_derive(secret_key, b"phone-encryption"))
        self.mac_key = _derive(secret_key, b"phone-lookup")
        # a separate key: an erasure's receipt can never be joined to a lookup hash
        self.receipt_key = _derive(secret_key, b"erasure-receipt")
        # other secrets kept in the database (consent-receipt signing keys)
        self.secrets = AESGCM(_derive(secret_key, b"secret-encryption"))
        self._secret = secret_key
        self._keks: dict[str, tuple[AESGCM, bytes]] = {}

    def kek(self, tenant: str) -> tuple[AESGCM, bytes]:
        """The tenant's key-encryption key for recording data keys, and its id (a fingerprint
        that says which secret wrapped a data key, without revealing anything of it)."""
        found = self._keks.get(tenant)
        if found is None:
            raw = _derive(self._secret, b"recording-kek:" + tenant.encode("utf-8"))
            kek_id = hmac.new(raw, b"callvault:kek-id", hashlib.sha256).digest()[:8]
            found = self._keks[tenant] = (AESGCM(raw), kek_id)
        return found


class PhoneVault:
    """Encrypts, decrypts and fingerprints phone numbers with keys derived from one secret.

    During a key rotation the previous secret is still used to read (decrypt, and match
    lookup hashes) but never to write; ``callvault secrets rotate`` re-keys what is stored.
    """

    def __init__(self, secret_key: str, previous_secret_key: str | None = None) -> None:
        self._current = _Keys(secret_key)
        self._previous = _Keys(previous_secret_key) if previous_secret_key else None

    def encrypt(self, phone: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._current.aead.encrypt(nonce, phone.encode("utf-8"), _AAD)
        return _FORMAT_V1 + nonce + sealed

    def decrypt(self, blob: bytes) -> str:
        return self.decrypt_with_age(blob)[0]

    def masked(self, blob: bytes | None) -> str | None:
        """A stored number as people may see it (:func:`mask_phone`): None when there is
        none (erased), ``***`` when sealed under a key this replica no longer has."""
        if blob is None:
            return None
        try:
            return mask_phone(self.decrypt(bytes(blob)))
        except (InvalidTag, ValueError):
            return "***"

    def decrypt_with_age(self, blob: bytes) -> tuple[str, bool]:
        """(number, True if it was sealed with the previous key and needs re-keying)."""
        if blob[:1] != _FORMAT_V1:
            raise ValueError("unknown phone ciphertext format")
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._current.aead.decrypt(nonce, ciphertext, _AAD).decode("utf-8"), False
        except InvalidTag:
            if self._previous is None:
                raise
        return self._previous.aead.decrypt(nonce, ciphertext, _AAD).decode("utf-8"), True

    def lookup_hashes(self, phone: str) -> list[bytes]:
        """Every hash a stored row of this number may carry (current key first)."""
        return self.lookup_hashes_of_normal(normalise_phone(phone))

    def lookup_hashes_of_normal(self, normal: str) -> list[bytes]:
        """:meth:`lookup_hashes` of a number the caller has just read with
        :func:`normalise_phone` (which reads its own output unchanged): not read a third time."""
        keys = [self._current] + ([self._previous] if self._previous else [])
        text = normal.encode("utf-8")
        return [hmac.new(k.mac_key, text, hashlib.sha256).digest() for k in keys]

    def lookup_hash(self, phone: str) -> bytes:
        """Keyed hash of the normalised number: equal numbers match, nothing can be read back."""
        return hmac.new(
            self._current.mac_key, normalise_phone(phone).encode("utf-8"), hashlib.sha256
        ).digest()

    def erasure_digests(self, phone: str) -> list[bytes]:
        """Keyed digests an erasure receipt of this number may carry (current key first).

        An erase or withdraw request keeps only this once it completes, so that a hold placed
        later can learn that the number's calls were erased, and when. It is not the lookup
        hash: nothing else in the database can be matched with it."""
        keys = [self._current] + ([self._previous] if self._previous else [])
        normal = normalise_phone(phone).encode("utf-8")
        return [hmac.new(k.receipt_key, normal, hashlib.sha256).digest() for k in keys]

    def erasure_digest(self, phone: str) -> bytes:
        return self.erasure_digests(phone)[0]

    def encrypt_secret(self, data: bytes, context: bytes) -> bytes:
        """A secret other than a phone number, bound to ``context`` (what it is and whose):
        a ciphertext moved to another row or tenant does not decrypt."""
        nonce = os.urandom(_NONCE_BYTES)
        return _FORMAT_V1 + nonce + self._current.secrets.encrypt(nonce, data, context)

    def wrap_data_key(self, tenant: str, recording_id: str, keyset: bytes) -> tuple[bytes, bytes]:
        """(wrapped data key, id of the key-encryption key): a recording's data key sealed
        under its tenant's key, bound to the tenant and recording (moved, it does not open)."""
        aead, kek_id = self._current.kek(tenant)
        nonce = os.urandom(_NONCE_BYTES)
        context = _data_key_context(tenant, recording_id)
        return _FORMAT_V1 + nonce + aead.encrypt(nonce, keyset, context), kek_id

    def unwrap_data_key_with_age(
        self, tenant: str, recording_id: str, wrapped: bytes
    ) -> tuple[bytes, bool]:
        """(data key, True if wrapped under the previous secret and due for re-wrapping)."""
        if wrapped[:1] != _FORMAT_V1:
            raise ValueError("unknown wrapped key format")
        nonce, sealed = wrapped[1 : 1 + _NONCE_BYTES], wrapped[1 + _NONCE_BYTES :]
        context = _data_key_context(tenant, recording_id)
        try:
            return self._current.kek(tenant)[0].decrypt(nonce, sealed, context), False
        except InvalidTag:
            if self._previous is None:
                raise
        return self._previous.kek(tenant)[0].decrypt(nonce, sealed, context), True

    def unwrap_data_key(self, tenant: str, recording_id: str, wrapped: bytes) -> bytes:
        return self.unwrap_data_key_with_age(tenant, recording_id, wrapped)[0]

    def current_kek_id(self, tenant: str) -> bytes:
        return self._current.kek(tenant)[1]

    def decrypt_secret_with_age(self, blob: bytes, context: bytes) -> tuple[bytes, bool]:
        """(secret, True if it was sealed with the previous key and needs re-keying)."""
        if blob[:1] != _FORMAT_V1:
            raise ValueError("unknown secret ciphertext format")
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._current.secrets.decrypt(nonce, ciphertext, context), False
        except InvalidTag:
            if self._previous is None:
                raise
        return self._previous.secrets.decrypt(nonce, ciphertext, context), True
