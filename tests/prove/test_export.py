"""jsonl exports verified offline: every kind of tampering with the file is detected and named."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest

from p402.core.ledger import GENESIS_HASH, ChainRow, chain_hash
from p402.prove.checkpoints import Checkpointer, latest_checkpoint
from p402.prove.audit import verify_rows
from p402.prove.export import export_rows, jsonl_lines, verify_export, write_lines
from p402.prove.signing import Signer
from p402.stores.sqlite import SqliteStore

from .ledgers import T0, record_calls, run


@pytest.fixture
def sealed(store: SqliteStore, signer: Signer) -> SqliteStore:
    end = run(record_calls(store, 40, checkpointer=Checkpointer(signer, "acme", interval_s=60)))
    run(record_calls(store, 3, start=end))  # an unsealed tail
    return store


def export(store: SqliteStore, path: Path, signer: Signer, sign_end: bool = False) -> Path:
    sealed = run(latest_checkpoint(store))
    write_lines(jsonl_lines(store.chain(), public_key=signer.public_key, sealed=sealed,
                            signer=signer if sign_end else None), path)
    return path


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def write(path: Path, items: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in items))


def rehash(items: list[dict[str, Any]]) -> None:
    """The attacker's move: recompute every hash and the end line after an edit."""
    prev = GENESIS_HASH
    for item in items:
        if item["type"] == "event":
            item["prev_hash"], item["hash"] = prev, chain_hash(prev, item["body"].encode())
            prev = item["hash"]
    events = [i for i in items if i["type"] == "event"]
    for item in items:
        if item["type"] == "end":
            item.update(rows=len(events), last_seq=events[-1]["seq"], last_hash=prev)


def event_index(items: list[dict[str, Any]], kind: str, nth: int = 0) -> int:
    found = [i for i, item in enumerate(items)
             if item["type"] == "event" and orjson.loads(item["body"]).get("kind") == kind]
    return found[nth]


def test_an_export_verifies_offline_and_keeps_every_body_byte_exact(sealed: SqliteStore, tmp_path: Path,
                                                                     signer: Signer) -> None:
    path = export(sealed, tmp_path / "ledger.jsonl", signer)
    items = read(path)
    assert items[0]["type"] == "p402-ledger-export" and items[0]["key_id"] == signer.key_id
    assert items[-1]["type"] == "end"
    stored = {row.seq: row.body for row in sealed.chain()}
    assert {i["seq"]: i["body"].encode() for i in items if i["type"] == "event"} == stored
    report = verify_export(path, signer.public_key)
    assert report.ok, report.summary()
    assert report.rows == len(stored) and report.checkpoints >= 4 and report.unsealed_rows > 0
    # The same auditor runs on the export's rows as on the live store's.
    assert verify_rows(export_rows(path), signer.public_key).checkpoints == report.checkpoints


def test_an_edited_row_is_named(sealed: SqliteStore, tmp_path: Path, signer: Signer) -> None:
    path = export(sealed, tmp_path / "l.jsonl", signer)
    items = read(path)
    i = event_index(items, "settle", 3)
    items[i]["body"] = items[i]["body"].replace('"cost_usd":"', '"cost_usd":"1')
    write(path, items)
    report = verify_export(path, signer.public_key)
    assert report.fault is not None and report.fault.seq == items[i]["seq"]
    assert "row edited" in report.fault.problem


def test_an_edit_with_every_hash_recomputed_is_caught_by_a_checkpoint(sealed: SqliteStore, tmp_path: Path,
                                                                      signer: Signer) -> None:
    path = export(sealed, tmp_path / "l.jsonl", signer)
    items = read(path)
    i = event_index(items, "settle", 3)
    items[i]["body"] = items[i]["body"].replace('"cost_usd":"', '"cost_usd":"1')
    rehash(items)
    write(path, items)
    report = verify_export(path, signer.public_key)
    assert report.fault is not None and "root does not match" in report.fault.problem


@pytest.mark.parametrize("how", ["delete", "insert", "reorder"])
def test_deleted_inserted_and_reordered_rows_are_named(sealed: SqliteStore, tmp_path: Path, signer: Signer,
                                                       how: str) -> None:
    path = export(sealed, tmp_path / "l.jsonl", signer)
    items = read(path)
    i = 12
    seq = items[i]["seq"]
    if how == "delete":
        del items[i]
    elif how == "insert":
        items.insert(i, dict(items[i - 3]))
    else:
        items[i], items[i + 1] = items[i + 1], items[i]
    write(path, items)
    report = verify_export(path, signer.public_key)
    assert report.fault is not None
    expected = {"delete": f"expected row {seq} here; row(s) missing",
                "insert": f"expected row {seq} here; row(s) out of order or duplicated",
                "reorder": f"expected row {seq} here; row(s) missing"}[how]
    assert report.fault.problem == expected


def test_a_missing_tail_after_the_last_checkpoint_is_reported_as_unsealed(sealed: SqliteStore, tmp_path: Path,
                                                                          signer: Signer) -> None:
    path = export(sealed, tmp_path / "l.jsonl", signer)
    items = read(path)
    write(path, items[:-3])  # the end line and two unsealed rows are gone
    report = verify_export(path, signer.public_key)
    assert report.fault is not None
    assert "without its end line: truncated" in report.fault.problem
    assert f"rows after row {report.sealed_through} are unsealed" in report.fault.problem


def test_a_truncation_inside_the_sealed_range_is_detected(sealed: SqliteStore, tmp_path: Path,
                                                          signer: Signer) -> None:
    path = export(sealed, tmp_path / "l.jsonl", signer)
    items = read(path)
    last_checkpoint = event_index(items, "checkpoint", -1)
    cut = items[:last_checkpoint - 4]
    cut.append({"type": "end"})
    rehash(cut)  # even a forged, consistent end line does not help
    write(path, cut)
    report = verify_export(path, signer.public_key)
    assert report.fault is not None and "truncated inside the sealed range" in report.fault.problem


def test_a_checkpoint_fetched_separately_catches_an_export_cut_back_to_an_older_state(
        sealed: SqliteStore, tmp_path: Path, signer: Signer) -> None:
    path = export(sealed, tmp_path / "old.jsonl", signer)
    later = T0 + timedelta(days=1)
    run(record_calls(sealed, 12, start=later))
    newer = run(Checkpointer(signer, "acme").maybe_seal(sealed, later + timedelta(hours=1)))
    assert newer is not None
    assert verify_export(path, signer.public_key).ok
    report = verify_export(path, signer.public_key, anchor=newer)
    assert report.fault is not None and "truncated inside the sealed range" in report.fault.problem


def test_a_rewritten_unsealed_tail_is_caught_only_by_a_signed_end_line(sealed: SqliteStore, tmp_path: Path,
                                                                       signer: Signer) -> None:
    for sign_end in (False, True):
        path = export(sealed, tmp_path / f"l{sign_end}.jsonl", signer, sign_end=sign_end)
        items = read(path)
        del items[-2]  # drop the last (unsealed) row, then fix up the end line
        rehash(items)
        write(path, items)
        report = verify_export(path, signer.public_key)
        if sign_end:
            assert report.fault is not None and "end line's signature does not verify" in report.fault.problem
        else:
            assert report.ok and "not yet covered by a signed checkpoint" in report.summary()


def test_a_swapped_checkpoint_is_named(sealed: SqliteStore, tmp_path: Path, signer: Signer) -> None:
    path = export(sealed, tmp_path / "l.jsonl", signer)
    items = read(path)
    first, second = event_index(items, "checkpoint", 1), event_index(items, "checkpoint", 2)
    older = orjson.loads(items[first]["body"])
    older["seq"] = items[second]["seq"]
    items[second]["body"] = orjson.dumps(older, option=orjson.OPT_SORT_KEYS).decode()
    rehash(items)
    write(path, items)
    report = verify_export(path, signer.public_key)
    assert report.fault is not None and report.fault.seq == items[second]["seq"]
    assert report.fault.problem.startswith("checkpoint: ")


def test_a_forged_checkpoint_signature_is_named(sealed: SqliteStore, tmp_path: Path, signer: Signer) -> None:
    path = export(sealed, tmp_path / "l.jsonl", signer)
    items = read(path)
    i = event_index(items, "checkpoint", 0)
    body = orjson.loads(items[i]["body"])
    body["signature"] = Signer.generate().sign(b"something else").hex()
    items[i]["body"] = orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
    rehash(items)
    write(path, items)
    report = verify_export(path, signer.public_key)
    assert report.fault is not None and report.fault.seq == items[i]["seq"]
    assert report.fault.event_id == body["event_id"]
    assert "signature does not verify" in report.fault.problem


def test_a_ledger_sealed_with_another_key_fails_against_the_trusted_key(tmp_path: Path, signer: Signer) -> None:
    """A forger can build a perfectly consistent ledger, but cannot sign it with the gateway's key."""
    forger = Signer.generate()
    other = SqliteStore(str(tmp_path / "forged.db"))
    try:
        run(record_calls(other, 20, checkpointer=Checkpointer(forger, "acme", interval_s=60)))
        path = export(other, tmp_path / "forged.jsonl", forger)
    finally:
        run(other.close())
    report = verify_export(path, signer.public_key)
    assert report.fault is not None and "not a trusted key" in report.fault.problem
    assert "names key" in report.summary()  # the header's key differs from the one given
    alone = verify_export(path)  # no key given: the file's own key is used, and the report says so
    assert alone.ok and "checked with the key in the file itself" in alone.summary()


def test_junk_after_the_end_line_and_non_exports_are_refused(sealed: SqliteStore, tmp_path: Path,
                                                             signer: Signer) -> None:
    path = export(sealed, tmp_path / "l.jsonl", signer)
    with open(path, "ab") as f:
        f.write(b'{"type":"event"}\n')
    report = verify_export(path, signer.public_key)
    assert report.fault is not None and "after the end line" in report.fault.problem
    other = tmp_path / "other.jsonl"
    other.write_text('{"hello": 1}\n')
    report = verify_export(other, signer.public_key)
    assert report.fault is not None and "not a p402 ledger export" in report.fault.problem
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(path.read_bytes()[:-30])  # cut in the middle of a line
    assert "not valid JSON" in str(verify_export(cut, signer.public_key).fault)


def test_export_streams_and_reports_progress(signer: Signer) -> None:
    seen: list[tuple[int, int | None]] = []

    def rows() -> Iterator[ChainRow]:
        prev = GENESIS_HASH
        for seq in range(1, 25_001):
            body = orjson.dumps({"kind": "policy", "seq": seq})
            digest = chain_hash(prev, body)
            yield ChainRow(seq, body, prev, digest)
            prev = digest

    lines = jsonl_lines(rows(), public_key=signer.public_key, progress=lambda d, t: seen.append((d, t)),
                        total=25_000)
    first = [next(lines) for _ in range(3)]  # produced before the source is exhausted
    assert orjson.loads(first[1])["seq"] == 1
    rest = list(lines)
    assert len(first) + len(rest) == 25_002
    assert seen == [(10_000, 25_000), (20_000, 25_000), (25_000, 25_000)]


def test_an_empty_ledger_exports_and_verifies(store: SqliteStore, tmp_path: Path, signer: Signer) -> None:
    path = export(store, tmp_path / "empty.jsonl", signer, sign_end=True)
    items = read(path)
    assert [i["type"] for i in items] == ["p402-ledger-export", "end"] and items[-1]["last_hash"] == GENESIS_HASH
    report = verify_export(path, signer.public_key)
    assert report.ok and report.rows == 0, report.summary()
