"""Checking a consent receipt offline: the file and the tenant's public key, nothing else.

No database, no settings, no network: an inspector runs ``callvault receipt verify FILE
--public-key KEY`` on their own machine. Each check either passes (a line saying what it
proved) or raises :class:`ReceiptInvalid` saying what failed.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from service.errors import ReceiptInvalid as ReceiptInvalid
from service.ledger import GENESIS, event_hash, merkle
from service.ledger.seals import leaf_data, seal_hash_v2

TOP_LEVEL = ("version", "tenant", "call", "notice", "events", "seal", "proof", "signature")
# what must be, or if present be, a JSON object: anything else is not a receipt (said so, not a
# Python error from reading a field of a string)
OBJECTS = ("tenant", "call", "signature")
OPTIONAL_OBJECTS = ("key", "notice", "seal", "proof")


def _b64(text: object, what: str, size: int) -> bytes:
    if not isinstance(text, str):
        raise ReceiptInvalid(f"{what}: not base64 text")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptInvalid(f"{what}: not base64") from None
    if len(raw) != size:
        raise ReceiptInvalid(f"{what}: {len(raw)} bytes, an Ed25519 one has {size}")
    if base64.b64encode(raw).decode("ascii") != text.strip():
        # base64's last character has bits that decoding ignores: only one spelling is valid
        raise ReceiptInvalid(f"{what}: not in canonical base64")
    return raw


def _hex(text: object, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ReceiptInvalid(f"{what}: not a SHA-256 in hex")
    return raw


def public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_b64(text, "public key", 32))


def parse(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ReceiptInvalid("not a receipt: the file is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ReceiptInvalid(
            f"not a receipt: the file is not JSON ({exc.msg} at line {exc.lineno} column "
            f"{exc.colno})"
        ) from None
    if not isinstance(document, dict):
        raise ReceiptInvalid("not a receipt: the file is JSON but not an object")
    missing = [k for k in TOP_LEVEL if k not in document]
    if missing:
        raise ReceiptInvalid(f"not a receipt: no {', '.join(missing)}")
    if document["version"] != 1:
        raise ReceiptInvalid(f"receipt version {document['version']!r} is not one this knows")
    for name in (*OBJECTS, *(k for k in OPTIONAL_OBJECTS if document.get(k) is not None)):
        if not isinstance(document[name], dict):
            raise ReceiptInvalid(f"not a receipt: {name} is not an object")
    return document


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            raise ReceiptInvalid(f"malformed receipt: no {'.'.join(path)}")
        obj = obj[key]
    return obj


def verify(data: bytes, key_text: str) -> list[str]:
    """Every check of the receipt ``data`` against the tenant's public key ``key_text`` (base64
    of the raw 32 bytes); the lines say what each proved."""
    key = public_key(key_text)
    document = parse(data)
    done: list[str] = []

    # 1. the tenant signed exactly this content
    signature = _b64(_get(document, "signature", "value"), "signature", 64)
    if document["signature"] != {
        "algorithm": "Ed25519",
        "canonicalization": "RFC 8785",
        "value": document["signature"]["value"],
    }:
        raise ReceiptInvalid("signature: not an Ed25519 signature over RFC 8785 canonical JSON")
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    try:
        signed_bytes = rfc8785.dumps(unsigned)
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise ReceiptInvalid(
            f"malformed receipt: cannot be put in canonical form ({exc})"
        ) from None
    try:
        key.verify(signature, signed_bytes)
    except InvalidSignature:
        named = document["key"].get("public_key") if document.get("key") is not None else None
        if isinstance(named, str) and named.strip() != key_text.strip():
            raise ReceiptInvalid(
                "signature: does not verify with the public key given; the receipt names key "
                f"{named} (another tenant's, or a different key), or it was changed"
            ) from None
        raise ReceiptInvalid(
            "signature: does not verify with the public key given: the receipt's content was "
            "changed after it was signed"
        ) from None
    tenant = _get(document, "tenant", "id")
    done.append(f"signature: Ed25519 by tenant {tenant!s}'s key over the canonical content")

    # 2. byte for byte as issued (whitespace or escapes changed would not touch the content)
    body = data[:-1] if data.endswith(b"\n") else data
    if body != rfc8785.dumps(document):
        raise ReceiptInvalid(
            "file: not byte for byte as issued (canonical JSON, RFC 8785); it was re-formatted "
            "or edited"
        )
    done.append("file: byte for byte as issued")

    call_id = str(_get(document, "call", "id"))
    events = _get(document, "events")
    if not isinstance(events, list):
        raise ReceiptInvalid("malformed receipt: events is not a list")
    full = document.get("view") == "full"

    # 3. the call's chain, from genesis (full view only: the subject's view is redacted)
    hashes: set[str] = set()
    if full:
        done.append(_check_chain(call_id, events, hashes))

    # 4. the notice named is the one the ledger says was played
    notice = document["notice"]
    if notice is not None:
        played = [
            e
            for e in events
            if isinstance(e, dict)
            and e.get("type") == "notice_played"
            and isinstance(e.get("details"), dict)
            and e["details"].get("sha256") == _get(notice, "audio_sha256")
            and e["details"].get("prompt_id") == _get(notice, "prompt_id")
            and e["details"].get("version") == _get(notice, "version")
        ]
        if not played:
            raise ReceiptInvalid("notice: no notice_played event names this prompt and audio")
        done.append(
            f"notice: {notice['prompt_id']} v{notice['version']} ({notice.get('language')}), "
            f"audio SHA-256 {notice['audio_sha256']} as played"
        )

    # 5. the seal's hash over its fields, and the call's head in its tree
    seal, proof = document["seal"], document["proof"]
    if seal is None or proof is None:
        due = _get(document, "coverage", "next_seal_due_by")
        done.append(f"seal: none covers this call yet (the next is due by {due})")
        return done
    root = _hex(_get(seal, "root"), "seal.root")
    prev = _hex(_get(seal, "prev_hash"), "seal.prev_hash")
    try:
        at = datetime.fromisoformat(_get(seal, "at"))
        size, upto = int(_get(seal, "tree_size")), int(_get(seal, "max_event_id"))
        expected = seal_hash_v2(prev, str(_get(seal, "tenant")), at, upto, size, root)
    except (TypeError, ValueError, OverflowError):
        raise ReceiptInvalid("seal: malformed fields") from None
    if expected != _hex(_get(seal, "hash"), "seal.hash"):
        raise ReceiptInvalid("seal: its hash does not match its fields")
    if _get(seal, "tenant") != tenant:
        raise ReceiptInvalid("seal: another tenant's seal")
    head = _hex(_get(proof, "head"), "proof.head")
    if _get(proof, "call_id") != call_id:
        raise ReceiptInvalid("proof: for another call")
    if full and head.hex() not in hashes:
        raise ReceiptInvalid("proof: the sealed head is none of the call's events")
    path = [_hex(p, "proof.path") for p in _get(proof, "path")]
    try:
        leaf = merkle.leaf_hash(leaf_data(uuid.UUID(call_id), head))
        index = int(_get(proof, "leaf_index"))
    except (TypeError, ValueError):
        raise ReceiptInvalid("proof: malformed fields") from None
    if int(_get(proof, "tree_size")) != size:
        raise ReceiptInvalid("proof: made for a tree of another size than the seal's")
    if not merkle.verify_inclusion(leaf, index, size, path, root):
        raise ReceiptInvalid("proof: the inclusion path does not lead to the seal's root")
    done.append(
        f"seal {seal.get('id')} of {seal['at']}: hash matches; the call's head is leaf {index} "
        f"of {size}, proven by {len(path)} hashes (RFC 6962)"
    )
    return done


def _check_chain(call_id: str, events: list[Any], hashes: set[str]) -> str:
    prev = GENESIS
    try:
        cid = uuid.UUID(call_id)
        for n, e in enumerate(events, start=1):
            if e["seq"] != n:
                raise ReceiptInvalid(f"events: expected event {n}, found {e['seq']}")
            if bytes.fromhex(e["prev_hash"]) != prev:
                raise ReceiptInvalid(f"events: event {n} does not follow event {n - 1}")
            digest = event_hash(
                cid,
                n,
                e["type"],
                datetime.fromisoformat(e["at"]),
                e["details"],
                e["dedupe_key"],
                prev,
            )
            if digest.hex() != e["hash"]:
                raise ReceiptInvalid(f"events: event {n} ({e['type']}) does not match its hash")
            hashes.add(e["hash"])
            prev = digest
    except (KeyError, TypeError, ValueError) as exc:
        raise ReceiptInvalid(f"events: malformed event ({exc})") from None
    return f"events: {len(events)} chained from genesis, every hash recomputed"
