"""Merkle trees as RFC 6962 (Certificate Transparency) hashes them, and inclusion proofs.

A leaf is ``SHA-256(0x00 || data)``, an interior node ``SHA-256(0x01 || left || right)``, and a
tree of ``n`` leaves splits at the largest power of two below ``n``, so any RFC 6962 (or RFC
9162) verifier agrees with these roots and proofs. Pure functions on bytes: the offline receipt
verifier uses them with no database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """The tree head over already-hashed leaves. Level by level, an odd node at the end moving
    up unpaired: that gives RFC 6962's split at the largest power of two (the left subtree is
    always complete), without recursion over a million leaves."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]): the sibling hashes from the leaf up to the root, log2(n) of
    them at most."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is not in a tree of {len(leaves)}")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    # walk down from the root, remembering each sibling subtree; the path lists them bottom-up
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            path.append(root(leaves[lo : lo + k]))
            lo = lo + k
    path.reverse()
    return path


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root that ``path`` proves ``leaf`` (already hashed) to be under at ``index`` of a
    tree of ``size`` leaves (RFC 9162 section 2.1.3.2), or None when the path cannot belong to
    such a tree (wrong length, index out of range)."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], expected_root: bytes
) -> bool:
    return root_from_path(leaf, index, size, path) == expected_root
