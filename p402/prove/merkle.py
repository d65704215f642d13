"""RFC 6962 / RFC 9162 Merkle trees over the ledger: roots, inclusion and consistency proofs.

A leaf is the raw bytes of one ledger row's hash (32 bytes), in seq order. Hashing
follows RFC 9162 §2.1 exactly, so any Certificate Transparency tool can check our
proofs: leaf hash `SHA-256(0x00 || leaf)`, interior node `SHA-256(0x01 || left || right)`,
and the tree head of n leaves splits at the largest power of two smaller than n.
The empty tree's head is `SHA-256("")`.

`Frontier` is the incremental form: it keeps only the roots of the perfect subtrees
along the right edge (at most log2(n) hashes), so appending a leaf and reading the
head cost O(log n) and memory stays flat however long the ledger grows.

Functions that build proofs take the leaves' *hashes* (`leaf_hash(leaf)`), so a
caller that already hashed them does not do it twice.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "leaf_hash",
    "node_hash",
    "root_of",
    "inclusion_proof",
    "verify_inclusion",
    "consistency_proof",
    "verify_consistency",
    "Frontier",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of leaves given by their leaf hashes; O(n), no recursion."""
    frontier = Frontier()
    for h in hashes:
        frontier.append_hash(h)
    return frontier.root()


def inclusion_proof(hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]): the audit path of leaf `index` (0-based) in the tree of `hashes`."""
    if not 0 <= index < len(hashes):
        raise IndexError(f"leaf {index} is not in a tree of {len(hashes)} leaves")
    path: list[bytes] = []
    lo, hi = 0, len(hashes)
    # Walk down from the root; the sibling subtree of each step is one proof
    # element, collected top-down and returned bottom-up as the RFC orders them.
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(root_of(hashes[lo + k:hi]))
            hi = lo + k
        else:
            path.append(root_of(hashes[lo:lo + k]))
            lo = lo + k
    path.reverse()
    return path


def verify_inclusion(leaf_hash_: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does `path` prove leaf `index` is in the tree of `tree_size` with head `root`?"""
    if index < 0 or index >= tree_size:
        return False
    fn, sn, r = index, tree_size - 1, leaf_hash_
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def consistency_proof(hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]): proves the tree of the first `old_size` leaves is a prefix of `hashes`.

    Empty when old_size is 0 or equals the tree size (nothing to prove).
    """
    n = len(hashes)
    if not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size} is not between 0 and the tree size {n}")
    if old_size in (0, n):
        return []
    return _subproof(hashes, 0, n, old_size, True)


def _subproof(hashes: Sequence[bytes], lo: int, hi: int, m: int, complete: bool) -> list[bytes]:
    # SUBPROOF(m, D[lo:hi], b) from RFC 9162 §2.1.4.1; depth is log2(n), so recursion is bounded.
    n = hi - lo
    if m == n:
        return [] if complete else [root_of(hashes[lo:hi])]
    k = _split(n)
    if m <= k:
        return _subproof(hashes, lo, lo + k, m, complete) + [root_of(hashes[lo + k:hi])]
    return _subproof(hashes, lo + k, hi, m - k, False) + [root_of(hashes[lo:lo + k])]


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (old_size, old_root) a prefix of (new_size, new_root)?

    Edge cases the RFC leaves to the caller: an empty old tree is a prefix of
    anything (with an empty proof); equal sizes need equal roots and an empty proof.
    """
    if old_size < 0 or old_size > new_size:
        return False
    if old_size == 0:
        return not proof
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


class Frontier:
    """The right edge of a growing Merkle tree: O(log n) memory, O(log n) appends.

    `peaks` holds (size, hash) of perfect subtrees, largest first; their sizes are
    the binary digits of the leaf count. Adding a leaf merges equal-sized peaks,
    exactly like carrying in binary addition.
    """

    __slots__ = ("size", "peaks")

    def __init__(self) -> None:
        self.size = 0
        self.peaks: list[tuple[int, bytes]] = []

    def append(self, leaf: bytes) -> None:
        """Add one leaf (raw bytes: a ledger row's hash)."""
        self.append_hash(leaf_hash(leaf))

    def append_hash(self, h: bytes) -> None:
        """Add one leaf given by its leaf hash."""
        size = 1
        peaks = self.peaks
        while peaks and peaks[-1][0] == size:
            left = peaks.pop()[1]
            h = node_hash(left, h)
            size *= 2
        peaks.append((size, h))
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """The tree head MTH of the leaves so far.

        Folding the peaks from the right gives the RFC's tree: the largest power of
        two below n is always the leftmost peak, and the rest recurses the same way.
        """
        if not self.peaks:
            return EMPTY_ROOT
        h = self.peaks[-1][1]
        for _, left in reversed(self.peaks[:-1]):
            h = node_hash(left, h)
        return h

    def copy(self) -> "Frontier":
        other = Frontier()
        other.size, other.peaks = self.size, list(self.peaks)
        return other

    def to_hex(self) -> list[str]:
        """The peaks as hex strings, largest first (sizes follow from `size`)."""
        return [h.hex() for _, h in self.peaks]

    @classmethod
    def from_hex(cls, size: int, peaks: Sequence[str]) -> "Frontier":
        """Rebuild a frontier saved with `to_hex`; raises ValueError if the shape is wrong."""
        sizes = [1 << bit for bit in range(size.bit_length() - 1, -1, -1) if size >> bit & 1] if size > 0 else []
        if size < 0 or len(sizes) != len(peaks):
            raise ValueError(f"a tree of {size} leaves has {len(sizes)} peaks, not {len(peaks)}")
        frontier = cls()
        frontier.size = size
        frontier.peaks = [(s, bytes.fromhex(h)) for s, h in zip(sizes, peaks)]
        if any(len(h) != 32 for _, h in frontier.peaks):
            raise ValueError("every peak must be a 32-byte hash")
        return frontier
