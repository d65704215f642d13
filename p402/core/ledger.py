"""The ledger's hash chain: canonical encoding, row hashes, and chain verification.

Each row's hash is `sha256(prev_hash || 0x0a || canonical(body))`, where the body
carries its own sequence number and `canonical` is JSON with sorted keys, no
insignificant whitespace, UTF-8. Editing a body breaks that row's hash; deleting,
inserting or reordering rows breaks the sequence or the next row's `prev_hash`.
An attacker who rewrites the whole tail is caught by signed checkpoints (which
commit to a row's hash), not by the chain alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable, Mapping

__all__ = ["GENESIS_HASH", "canonical", "chain_hash", "ChainRow", "ChainFault", "verify_chain", "EVENT_KINDS"]

GENESIS_HASH = "0" * 64
EVENT_KINDS = ("decision", "settle", "release", "expire", "late_settle", "policy", "checkpoint")


def canonical(body: Mapping[str, object]) -> bytes:
    """The one byte encoding of a ledger body that hashes are computed over."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainRow:
    """A row as stored: its sequence number, body bytes, and the two hashes."""

    seq: int
    body: bytes
    prev_hash: str
    hash: str
    columns: Mapping[str, object] | None = None  # indexed copies that must match the body


@dataclass(frozen=True, slots=True)
class ChainFault:
    """The first row that does not verify, and why."""

    seq: int
    problem: str

    def __str__(self) -> str:
        return f"row {self.seq}: {self.problem}"


def verify_chain(rows: Iterable[ChainRow], prev_hash: str = GENESIS_HASH, first_seq: int = 1) -> tuple[int, ChainFault | None]:
    """Walk the rows in order; return (rows checked, first fault or None)."""
    expected_seq = first_seq
    count = 0
    for row in rows:
        count += 1
        if row.seq != expected_seq:
            what = "missing" if row.seq > expected_seq else "out of order or duplicated"
            return count, ChainFault(row.seq, f"expected row {expected_seq} here; row(s) {what}")
        if row.prev_hash != prev_hash:
            return count, ChainFault(row.seq, "prev_hash does not match the previous row's hash (row inserted, deleted or reordered)")
        if chain_hash(prev_hash, row.body) != row.hash:
            return count, ChainFault(row.seq, "hash does not match the row's contents (row edited)")
        try:
            body = json.loads(row.body)
        except ValueError:
            return count, ChainFault(row.seq, "body is not valid JSON")
        if body.get("seq") != row.seq:
            return count, ChainFault(row.seq, "the body's seq differs from the row's position")
        if row.columns:
            for name, value in row.columns.items():
                if body.get(name) != value:
                    return count, ChainFault(row.seq, f"column {name} ({value!r}) differs from the hashed body ({body.get(name)!r})")
        prev_hash = row.hash
        expected_seq += 1
    return count, None
