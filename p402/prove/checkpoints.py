"""Signed checkpoints: the gateway seals the ledger's Merkle tree head at intervals.

A checkpoint is itself a ledger row (kind `checkpoint`). It covers every row with
`seq <= covered_seq` (so `tree_size == covered_seq`: rows are numbered from 1 with
no gaps, and earlier checkpoint rows are leaves like any other), and it holds:

- `root`: hex RFC 9162 tree head over those rows' hashes, in seq order;
- `covered_hash`: the hash of row `covered_seq` (where the chain stood);
- `prev_checkpoint`: `{event_id, root, tree_size}` of the previous checkpoint, or null;
- `key_id` and `signature`: hex Ed25519 over `statement(...)`;
- `frontier`: the tree's right edge (hex peaks), so a restarted sealer resumes
  from the last checkpoint instead of re-reading the whole ledger. Derived data:
  the auditor recomputes it and reports a mismatch.

`Checkpointer.maybe_seal(store, now)` is meant to be called often (say every
second): it reads only the rows appended since its last call, in bounded batches,
checks they extend the chain, feeds them into its frontier, and appends a
checkpoint when `interval_s` passed or `max_events` rows accumulated. Exactly one
sealer may run per ledger (two would fork the checkpoint chain): pass a `lock`
such as `FileSealLock` when several processes share a store.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping, Protocol

from p402.core.ids import new_id
from p402.core.ledger import GENESIS_HASH, ChainRow, canonical
from p402.errors import LedgerCorrupt
from p402.prove.merkle import Frontier
from p402.prove.rows import check_link, check_row, iso, parse_ts
from p402.prove.signing import Signer

__all__ = [
    "CHECKPOINT_KIND",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_MAX_EVENTS",
    "statement",
    "make_checkpoint",
    "should_seal",
    "Checkpointer",
    "SealLock",
    "FileSealLock",
    "latest_checkpoint",
]

CHECKPOINT_KIND = "checkpoint"
DEFAULT_INTERVAL_S = 60.0
DEFAULT_MAX_EVENTS = 10_000
DEFAULT_READ_BATCH = 5_000
_STATEMENT_TAG = b"p402-checkpoint/v1\n"  # domain separation: this key signs nothing else with this prefix


def statement(tenant: str, tree_size: int, root: str, covered_seq: int, ts: str, prev_root: str | None) -> bytes:
    """The exact bytes a checkpoint signature covers: a tag line, then canonical JSON of the fields."""
    return _STATEMENT_TAG + canonical({"covered_seq": covered_seq, "prev_root": prev_root or "", "root": root,
                                       "tenant": tenant, "tree_size": tree_size, "ts": ts})


def make_checkpoint(rows_hashes: Iterable[str | bytes] | Frontier, prev: Mapping[str, Any] | None,
                    signer: Signer, now: datetime, tenant: str, covered_hash: str | None = None) -> dict[str, Any]:
    """The body of a checkpoint over the rows whose hashes are given, in seq order from seq 1.

    `rows_hashes` may be the hashes themselves (hex or raw bytes; consumed as a
    stream) or a `Frontier` already fed with them. `prev` is the previous
    checkpoint's body (or None for the first). Append the result with `store.record`.
    """
    if isinstance(rows_hashes, Frontier):
        frontier = rows_hashes
    else:
        frontier = Frontier()
        for h in rows_hashes:
            raw = bytes.fromhex(h) if isinstance(h, str) else h
            frontier.append(raw)
            covered_hash = raw.hex() if isinstance(h, bytes) else h
    size, root, ts = frontier.size, frontier.root().hex(), iso(now)
    prev_link = None
    if prev is not None:
        prev_link = {"event_id": prev["event_id"], "root": prev["root"], "tree_size": prev["tree_size"]}
        if size <= prev["tree_size"]:
            raise ValueError(f"a checkpoint must cover more than the previous one ({prev['tree_size']} rows)")
    signature = signer.sign(statement(tenant, size, root, size, ts, prev_link["root"] if prev_link else None))
    return {"kind": CHECKPOINT_KIND, "event_id": new_id("evt", now), "ts": ts, "tenant": tenant,
            "tree_size": size, "covered_seq": size, "covered_hash": covered_hash, "root": root,
            "prev_checkpoint": prev_link, "key_id": signer.key_id, "signature": signature.hex(),
            "frontier": frontier.to_hex(), "reason": f"sealed ledger rows 1..{size}"}


def should_seal(pending_rows: int, seconds_since_seal: float | None, interval_s: float, max_events: int) -> bool:
    """Seal when rows wait and either `max_events` of them piled up or `interval_s` passed.

    Only rows other than checkpoints count as pending, so an idle ledger is not
    filled with checkpoints of checkpoints. `None` means nothing was sealed yet.
    """
    if pending_rows <= 0:
        return False
    return pending_rows >= max_events or seconds_since_seal is None or seconds_since_seal >= interval_s


class SealLock(Protocol):
    """Elects the one sealer among processes sharing a ledger."""

    def try_acquire(self) -> bool:
        """True if this process is (or just became) the sealer. Never waits for another holder
        (it may do I/O: the sealer calls it from a worker thread)."""
        ...

    def release(self) -> None:
        """Stop being the sealer now (another process can take over at once)."""
        ...


class FileSealLock:
    """An exclusive `flock` on a file next to a SQLite store, held for the process's life.

    The first process to take it seals; the others skip. If the sealer dies, the
    kernel drops its lock and the next caller takes over.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        import fcntl  # POSIX only; imported here so the module loads everywhere

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True, slots=True)
class _Sealed:
    """What the sealer remembers of the last checkpoint."""

    event_id: str
    root: str
    tree_size: int
    ts: datetime

    def as_prev(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "root": self.root, "tree_size": self.tree_size}


@dataclass(frozen=True, slots=True)
class _CheckpointQuery:
    """The fields of `p402.pipeline.ports.LedgerFilter`, asking for the newest checkpoint.

    Duplicated rather than imported because `prove` sits beside the pipeline, not
    above it; the stores read these attributes only.
    """

    deny_code: str | None = None
    scope_kind: str | None = None
    scope_id: str | None = None
    since: str | None = None
    kind: str | None = CHECKPOINT_KIND
    limit: int = 1
    before_seq: int | None = None


async def latest_checkpoint(store: Any) -> dict[str, Any] | None:
    """The newest checkpoint body in a store (via its `events` query, newest first), or None."""
    events = await store.events(_CheckpointQuery())
    return dict(events[0].body) if events else None


def _rows_after(store: Any, after_seq: int, batch: int) -> Iterator[ChainRow]:
    """Rows with seq > after_seq. Uses `chain(after_seq=...)` when the store has it, and asks
    for the `kind` column alone when it can (`all_columns=False`: the sealer reads nothing else).

    Without `after_seq`, rows up to it are read and skipped: correct, but O(ledger)
    per call, which is why stores should accept `after_seq`.
    """
    chain = store.chain
    parameters = inspect.signature(chain).parameters
    if "after_seq" in parameters:
        if "all_columns" in parameters:
            yield from chain(after_seq=after_seq, batch=batch, all_columns=False)
        else:
            yield from chain(after_seq=after_seq, batch=batch)
        return
    for row in chain(batch=batch):
        if row.seq > after_seq:
            yield row


class Checkpointer:
    """Decides when to seal, and seals incrementally (bounded memory, O(new rows) per call)."""

    def __init__(self, signer: Signer, tenant: str, interval_s: float = DEFAULT_INTERVAL_S,
                 max_events: int = DEFAULT_MAX_EVENTS, lock: SealLock | None = None,
                 read_batch: int = DEFAULT_READ_BATCH) -> None:
        if interval_s <= 0 or max_events <= 0 or read_batch <= 0:
            raise ValueError("interval_s, max_events and read_batch must be positive")
        self.signer, self.tenant = signer, tenant
        self.interval_s, self.max_events, self.read_batch = interval_s, max_events, read_batch
        self.lock = lock
        self._mutex = asyncio.Lock()
        self._reset()

    def _reset(self) -> None:
        self.frontier = Frontier()
        self.last_hash = GENESIS_HASH
        self.pending = 0  # non-checkpoint rows not covered by a checkpoint yet
        self.sealed: _Sealed | None = None
        self._started = False

    @property
    def seen_seq(self) -> int:
        return self.frontier.size

    def due(self, now: datetime) -> bool:
        """The pure decision, on what has been read so far."""
        since = None if self.sealed is None else (now - self.sealed.ts).total_seconds()
        return should_seal(self.pending, since, self.interval_s, self.max_events)

    async def maybe_seal(self, store: Any, now: datetime, final: bool = False) -> dict[str, Any] | None:
        """Read new rows; if a seal is due, append a checkpoint and return its body (else None).
        `final`: the process is stopping, so any unsealed row is due now (none left waiting).

        Raises LedgerCorrupt (and forgets its cache) if the stored chain does not
        verify: a sealer must never sign over a broken chain.
        """
        # Off the event loop: electing a sealer may mean connecting to the database.
        if self.lock is not None and not await asyncio.to_thread(self.lock.try_acquire):
            return None
        async with self._mutex:
            if not self._started:
                await self._resume(store)
            await self._catch_up(store)
            if not (self.due(now) or (final and self.pending)):
                return None
            body = make_checkpoint(self.frontier, self.sealed.as_prev() if self.sealed else None,
                                   self.signer, now, self.tenant, covered_hash=self.last_hash)
            await store.record(body)
            self.sealed = _Sealed(body["event_id"], body["root"], body["tree_size"], now)
            self.pending = 0
            return body

    async def _resume(self, store: Any) -> None:
        """Start from the newest checkpoint's saved frontier when it is sound; else from row 1."""
        self._started = True
        last = await latest_checkpoint(store)
        if not last:
            return
        try:
            frontier = Frontier.from_hex(int(last["tree_size"]), last.get("frontier") or [])
            sound = frontier.root().hex() == last["root"] and isinstance(last.get("covered_hash"), str)
        except (KeyError, TypeError, ValueError):
            sound = False
        if sound:
            self.frontier, self.last_hash = frontier, last["covered_hash"]
            self.sealed = _Sealed(last["event_id"], last["root"], int(last["tree_size"]), parse_ts(last["ts"]))

    async def _catch_up(self, store: Any) -> None:
        count = 0
        for row in _rows_after(store, self.frontier.size, self.read_batch):
            # What a checkpoint signs is the chain of hashes: every row's link and hash are checked.
            # Bodies are parsed only where the kind column says checkpoint (or is not there): a
            # column that lies about a checkpoint fails check_row; one that hides a checkpoint only
            # makes this sealer seal again sooner. The auditor checks every body and column.
            columns = row.columns
            if columns is None or columns.get("kind", CHECKPOINT_KIND) == CHECKPOINT_KIND:
                body, problem = check_row(row, self.last_hash, self.frontier.size + 1)
            else:
                body, problem = None, check_link(row, self.last_hash, self.frontier.size + 1)
            if problem is not None:
                seq = row.seq
                self._reset()
                raise LedgerCorrupt(f"row {seq}: {problem}; not sealing a broken ledger", seq=seq)
            self.frontier.append(bytes.fromhex(row.hash))
            self.last_hash = row.hash
            if body is not None and body.get("kind") == CHECKPOINT_KIND:
                self._adopt(body, row.seq)
            else:
                self.pending += 1
            count += 1
            if count % self.read_batch == 0:
                await asyncio.sleep(0)  # let requests run between batches of a long catch-up

    def _adopt(self, body: Mapping[str, Any], seq: int) -> None:
        """A checkpoint read from the ledger (ours, or a previous sealer's) becomes the latest seal."""
        if self.sealed is not None and self.sealed.event_id == body.get("event_id"):
            return
        try:
            sealed = _Sealed(body["event_id"], body["root"], int(body["tree_size"]), parse_ts(body["ts"]))
        except (KeyError, TypeError, ValueError):
            return  # a malformed checkpoint is the auditor's to report; the next seal supersedes it
        self.sealed = sealed
        # Rows between what it covered and where it was written are still unsealed.
        self.pending = max(0, seq - 1 - sealed.tree_size)
