"""docs/ledger.md: its standalone verifier works on a real export, so auditors can rely on it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson

from p402.prove.checkpoints import Checkpointer, latest_checkpoint
from p402.prove.export import jsonl_lines, write_lines
from p402.prove.signing import Signer
from p402.stores.sqlite import SqliteStore

from .ledgers import record_calls, rehash_from, run

DOC = Path(__file__).resolve().parents[2] / "docs" / "ledger.md"


def standalone_verifier() -> str:
    text = DOC.read_text()
    start = text.index("```python", text.index("<!-- standalone-verifier -->")) + len("```python")
    return text[start:text.index("```", start)]


def run_verifier(tmp_path: Path, export: Path, signer: Signer) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "verify.py"
    script.write_text(standalone_verifier())
    return subprocess.run([sys.executable, str(script), str(export), signer.public_hex], capture_output=True,
                          text=True, timeout=60)


def test_the_documented_standalone_verifier_accepts_a_good_export_and_rejects_a_resealed_edit(
        store: SqliteStore, db_path: Path, tmp_path: Path, signer: Signer) -> None:
    end = run(record_calls(store, 30, checkpointer=Checkpointer(signer, "acme", interval_s=60)))
    run(record_calls(store, 2, start=end))
    good = tmp_path / "good.jsonl"
    write_lines(jsonl_lines(store.chain(), public_key=signer.public_key, sealed=run(latest_checkpoint(store))), good)
    result = run_verifier(tmp_path, good, signer)
    assert result.returncode == 0, result.stderr
    rows = sum(1 for _ in store.chain())
    assert result.stdout.startswith(f"OK: {rows} rows, sealed through row ")

    seq = next(r.seq for r in store.chain() if orjson.loads(r.body)["kind"] == "settle")
    db = sqlite3.connect(db_path)
    db.execute("UPDATE ledger SET body = replace(body, ?, ?) WHERE seq = ?", ('"cost_usd":"', '"cost_usd":"1', seq))
    db.commit()
    db.close()
    rehash_from(db_path, seq)
    bad = tmp_path / "bad.jsonl"
    write_lines(jsonl_lines(store.chain(), public_key=signer.public_key), bad)
    result = run_verifier(tmp_path, bad, signer)
    assert result.returncode == 1 and "checkpoint root does not match" in result.stderr
