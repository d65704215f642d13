"""The decision micro-benchmark drives the real path on the real store; `p402 bench` is wired to the CLI."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from benchmarks import decision, org
from p402.cli import bench_cmds
from p402.cli.main import build_parser, main
from p402.core.ledger import verify_chain
from p402.stores.sqlite import SqliteStore


def test_the_decision_benchmark_admits_on_four_counters_and_leaves_an_intact_ledger(tmp_path: Path) -> None:
    cfg = org.write_config(tmp_path / "p402.yaml", tmp_path / "p402.db", "http://127.0.0.1:9/v1")
    result = asyncio.run(decision.measure(str(cfg), 120, warmup=30))
    assert result["n"] == 120 and result["denied"] == 0 and result["counters_per_request"] == 4
    us = result["decision_us"]
    assert 0 < us["p50"] <= us["p99"] <= us["p999"] <= us["max"]
    db = sqlite3.connect(tmp_path / "p402.db")
    # Every decision and every settlement is a ledger row; every hold was settled.
    kinds = dict(db.execute("SELECT kind, COUNT(*) FROM ledger WHERE kind IN ('decision','settle') GROUP BY kind"))
    assert kinds == {"decision": 150, "settle": 150}
    assert db.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 0
    db.close()
    store = SqliteStore(str(tmp_path / "p402.db"))
    try:
        count, fault = verify_chain(store.chain())
    finally:
        asyncio.run(store.close())
    assert fault is None and count > 300


def test_the_org_has_the_size_the_docs_promise(tmp_path: Path) -> None:
    raw = org.bench_config(tmp_path / "x.db", "http://127.0.0.1:9/v1")
    assert (len(raw["departments"]), len(raw["employees"]), len(raw["keys"])) == (20, 2000, 2000)
    assert {b["scope"].split(":")[0] for b in raw["budgets"]} == {"tenant", "department", "project"}
    assert any(b.get("per") == "employee" for b in raw["budgets"])
    assert len({s for s, _ in org.clients()}) == 2000


def test_bench_is_a_command_with_quick_out_and_no_litellm() -> None:
    args = build_parser().parse_args(["bench", "--quick", "--out", "/tmp/x", "--no-litellm"])
    assert args.func is bench_cmds.cmd_bench and args.quick and args.out == "/tmp/x" and args.no_litellm
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0


def test_bench_outside_a_checkout_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench_cmds, "benchmarks_dir", lambda: tmp_path / "benchmarks")
    assert main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("p402: p402 bench runs from a source checkout") and err.count("\n") == 1
