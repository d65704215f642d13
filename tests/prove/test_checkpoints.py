"""Checkpoints: when the sealer seals, what it signs, and that it resumes and refuses to sign a broken chain."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from p402.core.ledger import ChainRow
from p402.errors import LedgerCorrupt
from p402.prove.audit import verify_rows
from p402.prove.checkpoints import (Checkpointer, FileSealLock, latest_checkpoint, make_checkpoint, should_seal,
                                    statement)
from p402.prove.merkle import leaf_hash, root_of
from p402.prove.signing import Signer, verify_signature
from p402.stores.sqlite import SqliteStore

from .ledgers import T0, decision, record_calls, run


def stored_hashes(db_path: Path) -> list[str]:
    db = sqlite3.connect(db_path)
    try:
        return [r[0] for r in db.execute("SELECT hash FROM ledger ORDER BY seq")]
    finally:
        db.close()


def checkpoints_in(store: SqliteStore) -> list[dict[str, Any]]:
    import orjson
    return [b for b in (orjson.loads(r.body) for r in store.chain()) if b.get("kind") == "checkpoint"]


class IncrementalStore(SqliteStore):
    """The SQLite store plus the `chain(after_seq=...)` the sealer asks stores for; counts rows read."""

    rows_read = 0

    def chain(self, batch: int = 5000, after_seq: int = 0) -> Iterator[ChainRow]:  # type: ignore[override]
        for row in super().chain(batch):
            if row.seq > after_seq:
                self.rows_read += 1
                yield row


def test_should_seal_on_interval_or_event_count_and_never_when_idle() -> None:
    assert not should_seal(0, 3600.0, 60.0, 10_000)  # nothing new: no checkpoint of checkpoints
    assert should_seal(1, None, 60.0, 10_000)  # never sealed: seal what there is
    assert not should_seal(5, 59.9, 60.0, 10_000)
    assert should_seal(5, 60.0, 60.0, 10_000)
    assert should_seal(10_000, 1.0, 60.0, 10_000)
    assert not should_seal(9_999, 1.0, 60.0, 10_000)


def test_sealing_every_interval_signs_the_root_of_every_earlier_row(store: SqliteStore, db_path: Path,
                                                                     signer: Signer) -> None:
    sealer = Checkpointer(signer, "acme", interval_s=60)
    run(record_calls(store, 40, checkpointer=sealer))  # a call every 7 simulated seconds
    checkpoints = checkpoints_in(store)
    assert len(checkpoints) >= 4
    hashes = stored_hashes(db_path)
    previous = None
    for cp in checkpoints:
        n = cp["covered_seq"]
        assert cp["tree_size"] == n and cp["seq"] == n + 1  # the SQLite sealer writes right behind what it read
        assert cp["root"] == root_of([leaf_hash(bytes.fromhex(h)) for h in hashes[:n]]).hex()
        assert cp["covered_hash"] == hashes[n - 1]
        prev_root = previous["root"] if previous else None
        assert cp["prev_checkpoint"] == (None if previous is None else
                                         {"event_id": previous["event_id"], "root": previous["root"],
                                          "tree_size": previous["tree_size"]})
        message = statement("acme", n, cp["root"], n, cp["ts"], prev_root)
        assert verify_signature(signer.public_key, bytes.fromhex(cp["signature"]), message)
        previous = cp
    assert verify_rows(store.chain(), signer.public_key).ok


def test_max_events_seals_before_the_interval(store: SqliteStore, signer: Signer) -> None:
    sealer = Checkpointer(signer, "acme", interval_s=10**9, max_events=10)
    run(record_calls(store, 30, checkpointer=sealer))
    sizes = [cp["tree_size"] for cp in checkpoints_in(store)]
    assert sizes, "no checkpoint was written"
    # The first seal happens at once (nothing sealed yet); after that, every 10 ordinary rows.
    gaps = [b - a for a, b in zip(sizes, sizes[1:])]
    assert all(10 <= gap <= 12 for gap in gaps), gaps


def test_an_idle_ledger_gets_no_more_checkpoints(store: SqliteStore, signer: Signer) -> None:
    sealer = Checkpointer(signer, "acme", interval_s=60)
    end = run(record_calls(store, 3))
    assert run(sealer.maybe_seal(store, end)) is not None
    for hours in range(1, 5):
        assert run(sealer.maybe_seal(store, end + timedelta(hours=hours))) is None
    assert len(checkpoints_in(store)) == 1


def test_a_restarted_sealer_resumes_from_the_last_checkpoint_without_rereading(db_path: Path,
                                                                               signer: Signer) -> None:
    store = IncrementalStore(str(db_path))
    try:
        end = run(record_calls(store, 30, checkpointer=Checkpointer(signer, "acme", interval_s=60)))
        last = run(latest_checkpoint(store))
        assert last is not None
        run(record_calls(store, 3, start=end))
        rows_now = len(stored_hashes(db_path))
        store.rows_read = 0
        fresh = Checkpointer(signer, "acme", interval_s=60)  # a new process: empty memory
        sealed = run(fresh.maybe_seal(store, end + timedelta(minutes=5)))
        assert sealed is not None and sealed["prev_checkpoint"]["event_id"] == last["event_id"]
        assert store.rows_read == rows_now - last["covered_seq"]  # only rows after the last seal
        assert verify_rows(store.chain(), signer.public_key).ok
    finally:
        run(store.close())


def test_the_sealer_refuses_to_sign_a_tampered_ledger(store: SqliteStore, db_path: Path, signer: Signer) -> None:
    sealer = Checkpointer(signer, "acme", interval_s=60)
    end = run(record_calls(store, 6, checkpointer=sealer))
    count = len(checkpoints_in(store))
    run(record_calls(store, 2, start=end))
    db = sqlite3.connect(db_path)
    last_seq = db.execute("SELECT MAX(seq) FROM ledger").fetchone()[0]
    db.execute("UPDATE ledger SET body = replace(body, ?, ?) WHERE seq = ?",
               ('"cost_usd":"', '"cost_usd":"9', last_seq))
    db.commit()
    db.close()
    with pytest.raises(LedgerCorrupt, match="row edited"):
        run(sealer.maybe_seal(store, end + timedelta(hours=1)))
    assert len(checkpoints_in(store)) == count


def test_a_running_sealer_adopts_a_checkpoint_another_sealer_wrote(store: SqliteStore, signer: Signer) -> None:
    # The sealer reads only the kind column of each row, and parses the bodies of checkpoints:
    # one written by another sealer (a replica that held the lock before) becomes the one it links to.
    mine, theirs = Checkpointer(signer, "acme", interval_s=60), Checkpointer(signer, "acme", interval_s=60)
    end = run(record_calls(store, 3))
    assert run(mine.maybe_seal(store, end)) is not None
    end = run(record_calls(store, 3, start=end + timedelta(minutes=2)))
    other = run(theirs.maybe_seal(store, end))
    assert other is not None
    end = run(record_calls(store, 3, start=end + timedelta(minutes=2)))
    sealed = run(mine.maybe_seal(store, end))
    assert sealed is not None
    assert sealed["prev_checkpoint"]["event_id"] == other["event_id"]
    assert verify_rows(store.chain(), signer.public_key).ok


def test_the_sealer_refuses_a_row_whose_kind_column_claims_a_checkpoint(store: SqliteStore, db_path: Path,
                                                                        signer: Signer) -> None:
    sealer = Checkpointer(signer, "acme", interval_s=60)
    end = run(record_calls(store, 3))
    db = sqlite3.connect(db_path)
    db.execute("UPDATE ledger SET kind = 'checkpoint' WHERE seq = 2")
    db.commit()
    db.close()
    with pytest.raises(LedgerCorrupt, match="row 2: column kind"):
        run(sealer.maybe_seal(store, end))
    assert checkpoints_in(store) == []


def test_only_the_lock_holder_seals(store: SqliteStore, db_path: Path, signer: Signer) -> None:
    end = run(record_calls(store, 3))
    first_lock = FileSealLock(str(db_path) + ".seal-lock")
    second_lock = FileSealLock(str(db_path) + ".seal-lock")
    try:
        first = Checkpointer(signer, "acme", lock=first_lock)
        second = Checkpointer(signer, "acme", lock=second_lock)
        assert run(first.maybe_seal(store, end)) is not None
        run(store.record(decision(end)))
        assert run(second.maybe_seal(store, end + timedelta(hours=1))) is None
        first_lock.release()  # the sealer process exits; another takes over and links to its checkpoint
        sealed = run(second.maybe_seal(store, end + timedelta(hours=1)))
        assert sealed is not None
        assert verify_rows(store.chain(), signer.public_key).ok
    finally:
        first_lock.release()
        second_lock.release()


def test_make_checkpoint_takes_hashes_or_a_frontier_and_must_grow(signer: Signer) -> None:
    hashes = [f"{i:064x}" for i in range(1, 8)]
    body = make_checkpoint(hashes, None, signer, T0, "acme")
    assert body["tree_size"] == 7 and body["covered_hash"] == hashes[-1]
    assert body["root"] == root_of([leaf_hash(bytes.fromhex(h)) for h in hashes]).hex()
    with pytest.raises(ValueError, match="more than the previous"):
        make_checkpoint(hashes, body, signer, T0, "acme")
