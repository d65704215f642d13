"""The auditor on a live SQLite ledger: tampering with the file is found and named precisely."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from p402.prove.audit import verify_rows
from p402.prove.checkpoints import Checkpointer
from p402.prove.signing import Signer
from p402.stores.sqlite import SqliteStore

from .ledgers import T0, record_calls, rehash_from, run


@pytest.fixture
def sealed(store: SqliteStore, signer: Signer) -> SqliteStore:
    """40 calls with a checkpoint every simulated minute, then 3 unsealed calls."""
    end = run(record_calls(store, 40, checkpointer=Checkpointer(signer, "acme", interval_s=60)))
    run(record_calls(store, 3, start=end))
    return store


def sql(db_path: Path, statement: str, *args: Any) -> list[Any]:
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute(statement, args).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def body_at(db_path: Path, seq: int) -> dict[str, Any]:
    return orjson.loads(sql(db_path, "SELECT body FROM ledger WHERE seq = ?", seq)[0][0])


def checkpoint_seqs(db_path: Path) -> list[int]:
    return [r[0] for r in sql(db_path, "SELECT seq FROM ledger WHERE kind = 'checkpoint' ORDER BY seq")]


def first_settle_seq(db_path: Path, after: int = 0) -> int:
    return sql(db_path, "SELECT MIN(seq) FROM ledger WHERE kind = 'settle' AND seq > ?", after)[0][0]


def test_an_untouched_ledger_verifies_with_its_checkpoints(sealed: SqliteStore, signer: Signer) -> None:
    report = verify_rows(sealed.chain(), signer.public_key)
    assert report.ok, report.summary()
    assert report.checkpoints >= 4
    assert report.rows == report.last_seq
    assert report.unsealed_rows > 0  # the last calls came after the last checkpoint
    assert f"rows {report.sealed_through + 1}..{report.last_seq}" in report.summary()


def test_an_edited_row_is_named(sealed: SqliteStore, db_path: Path, signer: Signer) -> None:
    seq = first_settle_seq(db_path)
    event_id = body_at(db_path, seq)["event_id"]
    sql(db_path, "UPDATE ledger SET body = replace(body, '\"cost_usd\":\"', '\"cost_usd\":\"1') WHERE seq = ?", seq)
    report = verify_rows(sealed.chain(), signer.public_key)
    assert not report.ok
    assert report.fault is not None
    assert (report.fault.seq, report.fault.event_id) == (seq, event_id)
    assert "row edited" in report.fault.problem
    assert f"row {seq} ({event_id})" in report.summary()


def test_a_deleted_row_is_named(sealed: SqliteStore, db_path: Path, signer: Signer) -> None:
    sql(db_path, "DELETE FROM ledger WHERE seq = 17")
    report = verify_rows(sealed.chain(), signer.public_key)
    assert report.fault is not None and report.fault.seq == 18
    assert "expected row 17 here; row(s) missing" in report.fault.problem


def test_an_edited_indexed_column_is_found(sealed: SqliteStore, db_path: Path, signer: Signer) -> None:
    sql(db_path, "UPDATE ledger SET department = 'sales' WHERE seq = 3")
    report = verify_rows(sealed.chain(), signer.public_key)
    assert report.fault is not None and report.fault.seq == 3
    assert "column department" in report.fault.problem


def test_an_edit_hidden_by_recomputing_every_hash_is_caught_by_the_next_checkpoint(
        sealed: SqliteStore, db_path: Path, signer: Signer) -> None:
    seq = first_settle_seq(db_path, after=5)
    sql(db_path, "UPDATE ledger SET body = replace(body, '\"cost_usd\":\"', '\"cost_usd\":\"1') WHERE seq = ?", seq)
    rehash_from(db_path, seq)
    report = verify_rows(sealed.chain(), signer.public_key)
    checkpoint = min(s for s in checkpoint_seqs(db_path) if s > seq)
    assert report.fault is not None
    assert report.fault.seq == checkpoint
    assert report.fault.event_id == body_at(db_path, checkpoint)["event_id"]
    assert "root does not match" in report.fault.problem


def test_a_rewrite_of_the_unsealed_tail_rests_on_the_chain_alone(sealed: SqliteStore, db_path: Path,
                                                                  signer: Signer) -> None:
    """What checkpoints cannot do, and the report says so: rows after the last one are unsealed."""
    last = sql(db_path, "SELECT MAX(seq) FROM ledger")[0][0]
    sql(db_path, "UPDATE ledger SET body = replace(body, '\"cost_usd\":\"', '\"cost_usd\":\"1') WHERE seq = ?", last)
    rehash_from(db_path, last)
    report = verify_rows(sealed.chain(), signer.public_key)
    assert report.ok and report.unsealed_rows >= 1
    assert "not yet covered by a signed checkpoint" in report.summary()


def test_a_checkpoint_with_a_forged_signature_is_named(sealed: SqliteStore, db_path: Path, signer: Signer) -> None:
    seq = checkpoint_seqs(db_path)[1]
    body = body_at(db_path, seq)
    forged = dict(body, signature=("00" if body["signature"][:2] != "00" else "11") + body["signature"][2:])
    sql(db_path, "UPDATE ledger SET body = ? WHERE seq = ?", orjson.dumps(forged, option=orjson.OPT_SORT_KEYS).decode(),
        seq)
    rehash_from(db_path, seq)
    report = verify_rows(sealed.chain(), signer.public_key)
    assert report.fault is not None and (report.fault.seq, report.fault.event_id) == (seq, body["event_id"])
    assert "signature does not verify" in report.fault.problem


def test_checkpoints_signed_by_another_key_are_refused(sealed: SqliteStore, signer: Signer) -> None:
    stranger = Signer.generate()
    report = verify_rows(sealed.chain(), stranger.public_key)
    assert report.fault is not None and "not a trusted key" in report.fault.problem
    # After a key rotation both keys are trusted.
    assert verify_rows(sealed.chain(), [stranger.public_hex, signer.public_hex]).ok


def test_swapped_checkpoints_are_named(sealed: SqliteStore, db_path: Path, signer: Signer) -> None:
    first, second = checkpoint_seqs(db_path)[1:3]
    a, b = body_at(db_path, first), body_at(db_path, second)
    a["seq"], b["seq"] = second, first
    for seq, body in ((first, b), (second, a)):
        sql(db_path, "UPDATE ledger SET body = ?, event_id = ?, ts = ? WHERE seq = ?",
            orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode(), body["event_id"], body["ts"], seq)
    rehash_from(db_path, first)
    report = verify_rows(sealed.chain(), signer.public_key)
    assert report.fault is not None and report.fault.seq == first
    assert report.fault.problem.startswith("checkpoint: ")


def test_without_a_public_key_the_report_says_signatures_went_unchecked(sealed: SqliteStore) -> None:
    report = verify_rows(sealed.chain(), None)
    assert report.ok and not report.signatures_checked
    assert "signatures were not checked" in report.summary()


def test_an_empty_ledger_verifies(store: SqliteStore, signer: Signer) -> None:
    report = verify_rows(store.chain(), signer.public_key)
    assert report.ok and report.rows == 0 and report.notes == []


def test_a_ledger_without_checkpoints_warns_that_nothing_is_signed(store: SqliteStore, signer: Signer) -> None:
    run(record_calls(store, 2, start=T0))
    report = verify_rows(store.chain(), signer.public_key)
    assert report.ok and "no signed checkpoint" in report.summary()
