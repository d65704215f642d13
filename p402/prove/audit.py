"""The auditor: walks a ledger and checks the hash chain and every signed checkpoint.

It needs nothing but the rows (from a live store's `chain()` or an export file)
and the gateway's public key. Per row it checks what `core.ledger.verify_chain`
checks (sequence, prev_hash, row hash, body seq, indexed columns). Per checkpoint
it recomputes the Merkle root over every row the checkpoint covers, checks the
signature over the checkpoint statement, and checks the link to the previous
checkpoint. The walk stops at the first fault and names it: seq, event_id, and
what is wrong.

Memory stays flat: the tree is kept as a `Frontier` at the last sealed point plus
the hashes of rows not yet sealed (bounded by `max_lag_rows`; a checkpoint that
covers rows further back than that cannot be checked and is reported).

What the chain alone cannot catch, checkpoints do: an attacker who edits a row
and recomputes every later hash produces a valid chain, but not the signed root.
Rows after the last checkpoint have no such protection; the report counts them
as unsealed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from p402.core.ledger import GENESIS_HASH, ChainRow
from p402.prove.checkpoints import CHECKPOINT_KIND, statement
from p402.prove.merkle import Frontier
from p402.prove.rows import check_row
from p402.prove.signing import PublicKeyLike, key_id_of, load_public_key, verify_signature

__all__ = ["Fault", "AuditReport", "Auditor", "verify_rows", "trusted_keys", "MAX_LAG_ROWS"]

MAX_LAG_ROWS = 100_000  # rows a checkpoint may trail its own position by (a sealer writes within a few)
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Fault:
    """The first thing that does not verify."""

    seq: int
    event_id: str | None
    problem: str

    def __str__(self) -> str:
        who = f" ({self.event_id})" if self.event_id else ""
        return f"row {self.seq}{who}: {self.problem}"


@dataclass
class AuditReport:
    """What an audit found. `ok` is True only when nothing failed."""

    rows: int = 0
    checkpoints: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    sealed_through: int = 0  # rows 1..sealed_through are under a verified, signed checkpoint
    last_checkpoint: dict[str, Any] | None = None  # {seq, event_id, tree_size, root, key_id}
    signatures_checked: bool = True
    fault: Fault | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.fault is None

    @property
    def unsealed_rows(self) -> int:
        """Rows after the last verified checkpoint's coverage (their order and content rest on the chain alone)."""
        return max(0, self.last_seq - self.sealed_through)

    def summary(self) -> str:
        """One paragraph for a terminal."""
        if self.fault is not None:
            head = f"LEDGER INVALID: {self.fault}"
        else:
            head = f"ledger intact: {self.rows} rows, {self.checkpoints} signed checkpoints"
            if self.checkpoints:
                head += f", sealed through row {self.sealed_through}"
        lines = [head] + [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def trusted_keys(public_key: PublicKeyLike | Iterable[PublicKeyLike] | None) -> dict[str, Ed25519PublicKey] | None:
    """key_id -> key for one key or several (after a rotation); None means 'check no signatures'."""
    if public_key is None:
        return None
    if isinstance(public_key, (Ed25519PublicKey, bytes, str)):
        items: Iterable[PublicKeyLike] = [public_key]
    else:
        items = public_key
    keys = [load_public_key(k) for k in items]
    return {key_id_of(k): k for k in keys}


class Auditor:
    """A streaming audit: `feed` rows in order (it returns False once a fault is found), then `finish`."""

    def __init__(self, public_keys: Mapping[str, Ed25519PublicKey] | None, max_lag_rows: int = MAX_LAG_ROWS) -> None:
        self.keys = public_keys
        self.max_lag_rows = max_lag_rows
        self.report = AuditReport(signatures_checked=public_keys is not None)
        self._sealed = Frontier()  # the tree at the last verified checkpoint (or further, if lag forced it)
        self._unsealed: deque[bytes] = deque()  # row hashes after `_sealed`
        self._prev: dict[str, Any] | None = None  # {event_id, root, tree_size} of the last checkpoint
        self._expected_seq = 1

    def feed(self, row: ChainRow) -> bool:
        report = self.report
        if report.fault is not None:
            return False
        body, problem = check_row(row, report.last_hash, self._expected_seq)
        if body is None:
            report.fault = Fault(row.seq, _loose_event_id(row.body), problem or "row does not verify")
            return False
        if body.get("kind") == CHECKPOINT_KIND:
            problem = self._check_checkpoint(body, row.seq)
            if problem is not None:
                report.fault = Fault(row.seq, _event_id(body), f"checkpoint: {problem}")
                return False
        self._unsealed.append(bytes.fromhex(row.hash))
        if len(self._unsealed) > self.max_lag_rows:
            self._sealed.append(self._unsealed.popleft())
        report.rows += 1
        report.last_seq, report.last_hash = row.seq, row.hash
        self._expected_seq += 1
        return True

    def finish(self) -> AuditReport:
        report = self.report
        if report.fault is None:
            if report.checkpoints == 0 and report.rows:
                report.notes.append("no signed checkpoint: the chain alone cannot show that rows were not "
                                    "rewritten wholesale")
            elif report.unsealed_rows:
                report.notes.append(f"rows {report.sealed_through + 1}..{report.last_seq} are not yet covered by "
                                    "a signed checkpoint")
            if not report.signatures_checked and report.checkpoints:
                report.notes.append("checkpoint signatures were not checked: no public key was given")
        return report

    def _check_checkpoint(self, body: Mapping[str, Any], seq: int) -> str | None:
        problem = _shape_problem(body)
        if problem is not None:
            return problem
        size, covered = body["tree_size"], body["covered_seq"]
        if size != covered:
            return f"tree_size {size} differs from covered_seq {covered}"
        if covered >= seq:
            return f"claims to cover rows up to {covered}, but a checkpoint can only cover rows before it"
        problem = self._check_link(body)
        if problem is not None:
            return problem
        if covered < self._sealed.size:
            return (f"covers rows up to {covered} but was written more than {self.max_lag_rows} rows later; "
                    "it cannot be checked")
        last_leaf = None
        while self._sealed.size < covered:
            last_leaf = self._unsealed.popleft()
            self._sealed.append(last_leaf)
        if self._sealed.root().hex() != body["root"]:
            return f"root does not match rows 1..{covered} (a covered row or the checkpoint was altered)"
        covered_hash = body.get("covered_hash")
        if covered_hash is not None and last_leaf is not None and covered_hash != last_leaf.hex():
            return f"covered_hash is not the hash of row {covered}"
        frontier = body.get("frontier")
        if frontier is not None and frontier != self._sealed.to_hex():
            return "its saved frontier does not match the tree it covers"
        problem = self._check_signature(body)
        if problem is not None:
            return problem
        self._prev = {"event_id": body["event_id"], "root": body["root"], "tree_size": size}
        report = self.report
        report.checkpoints += 1
        report.sealed_through = covered
        report.last_checkpoint = {"seq": seq, "event_id": body["event_id"], "tree_size": size,
                                  "root": body["root"], "key_id": body["key_id"], "ts": body["ts"]}
        return None

    def _check_link(self, body: Mapping[str, Any]) -> str | None:
        link, prev = body.get("prev_checkpoint"), self._prev
        if prev is None:
            if link is not None:
                return (f"names previous checkpoint {link.get('event_id') if isinstance(link, dict) else link!r}, "
                        "but no checkpoint precedes it (a checkpoint was removed)")
            return None
        if body["event_id"] == prev["event_id"]:
            return f"repeats the earlier checkpoint {prev['event_id']} (a copy put in place of another)"
        if not isinstance(link, dict) or link.get("event_id") != prev["event_id"] \
                or link.get("root") != prev["root"] or link.get("tree_size") != prev["tree_size"]:
            return (f"prev_checkpoint does not name the checkpoint before it ({prev['event_id']}): "
                    "checkpoints were swapped, removed or forged")
        if body["tree_size"] <= prev["tree_size"]:
            return f"covers no more rows than the previous checkpoint ({prev['tree_size']})"
        return None

    def _check_signature(self, body: Mapping[str, Any]) -> str | None:
        if self.keys is None:
            return None
        key = self.keys.get(body["key_id"])
        if key is None:
            return f"signed by key {body['key_id']}, which is not a trusted key ({', '.join(self.keys) or 'none'})"
        link = body.get("prev_checkpoint")
        message = statement(body["tenant"], body["tree_size"], body["root"], body["covered_seq"], body["ts"],
                            link["root"] if isinstance(link, dict) else None)
        if not verify_signature(key, bytes.fromhex(body["signature"]), message):
            return "signature does not verify (forged, or the signed fields were altered)"
        return None


def _event_id(body: Mapping[str, Any]) -> str | None:
    value = body.get("event_id")
    return value if isinstance(value, str) else None


def _loose_event_id(raw: bytes) -> str | None:
    """The event_id a broken row claims, to help find it (not trusted for anything else)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return _event_id(body) if isinstance(body, dict) else None


def _is_hex(value: object, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and set(value) <= _HEX


def _shape_problem(body: Mapping[str, Any]) -> str | None:
    for name in ("tree_size", "covered_seq"):
        value = body.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{name} is missing or not a non-negative integer"
    for name in ("event_id", "ts", "tenant", "key_id"):
        if not isinstance(body.get(name), str):
            return f"{name} is missing"
    if not _is_hex(body.get("root"), 64):
        return "root is missing or not 64 hex characters"
    if not _is_hex(body.get("signature"), 128):
        return "signature is missing or not 128 hex characters"
    return None


def verify_rows(rows: Iterable[ChainRow], public_key: PublicKeyLike | Iterable[PublicKeyLike] | None,
                max_lag_rows: int = MAX_LAG_ROWS) -> AuditReport:
    """Audit a whole chain (e.g. `store.chain()`); `public_key` None skips signature checks (and says so)."""
    auditor = Auditor(trusted_keys(public_key), max_lag_rows)
    for row in rows:
        if not auditor.feed(row):
            break
    return auditor.finish()
