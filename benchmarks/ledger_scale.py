"""Ledger at scale: build a SQLite ledger of N events (default 1,000,000), then time the auditor's jobs.

    python benchmarks/ledger_scale.py [--events 1000000] [--dir /tmp/p402-scale] [--keep]

It bulk-writes realistic decision/settlement rows (the same hashing, columns and
spend rollups the store writes, but batched in large transactions) with a signed
checkpoint every 10,000 rows, then reports how long these take and the peak
memory of the process:

- verify: `verify_rows(store.chain(), key)` — every row hash and every checkpoint;
- export: the jsonl export to a file, then `verify_export` of that file, offline;
- resume: a fresh `Checkpointer` catching up from its last checkpoint;
- spend: `store.spend("department", ...)` over the whole period (rollups, not the ledger).

A script, not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p402.core.ids import new_id  # noqa: E402
from p402.core.ledger import GENESIS_HASH, chain_hash  # noqa: E402
from p402.prove.audit import verify_rows  # noqa: E402
from p402.prove.checkpoints import Checkpointer, latest_checkpoint, make_checkpoint  # noqa: E402
from p402.prove.export import jsonl_lines, verify_export, write_lines  # noqa: E402
from p402.prove.merkle import Frontier  # noqa: E402
from p402.prove.rows import iso  # noqa: E402
from p402.prove.signing import Signer  # noqa: E402
from p402.stores.sqlite import LEDGER_COLUMNS, SqliteStore  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
CHECKPOINT_EVERY = 10_000
BATCH = 20_000
DEPARTMENTS = ("eng", "sales", "support", "research", "finance")
INSERT = (f"INSERT INTO ledger (seq, body, prev_hash, hash, {', '.join(LEDGER_COLUMNS)}) "
          f"VALUES ({', '.join('?' * (4 + len(LEDGER_COLUMNS)))})")


def bodies(count: int):
    """Decision/settlement pairs spread over 30 days; every 10th decision is a denial."""
    step = timedelta(days=30) / max(count, 1)
    now, n = START, 0
    while n < count:
        dept = DEPARTMENTS[n % len(DEPARTMENTS)]
        who = {"tenant": "acme", "department": dept, "employee": f"{dept}-{n % 97}", "key": f"k-{dept}-{n % 97}",
               "customer": f"c{n % 13}", "project": f"p{n % 7}", "feature": "", "workflow": ""}
        event_id = new_id("evt", now)
        denied = (n // 2) % 10 == 9
        decision = {"kind": "decision", "event_id": event_id, "ts": iso(now), **who, "model": "gpt-4o-mini",
                    "provider": "openai", "outcome": "deny" if denied else "allow",
                    "deny_code": "BUDGET_EXCEEDED" if denied else None,
                    "reason": "department budget would be exceeded" if denied else "within budget",
                    "recovery": {"action": "wait_for_reset", "detail": "resets at month end"} if denied else {},
                    "estimate_usd": "0.00015", "cost_usd": None, "input_tokens": 200, "output_tokens": None,
                    "max_tokens": 200, "policy_version": 3, "hold_id": None if denied else new_id("hold", now),
                    "ref": None, "flags": []}
        yield decision
        n += 1
        now += step
        if not denied and n < count:
            yield {"kind": "settle", "event_id": new_id("evt", now), "ts": iso(now), "tenant": "acme",
                   "ref": event_id, "hold_id": decision["hold_id"], "model": "gpt-4o-mini", "provider": "openai",
                   "estimate_usd": "0.00015", "cost_usd": "0.000123", "input_tokens": 200, "output_tokens": 150,
                   "flags": [], "policy_version": 3, "department": dept}
            n += 1
            now += step


def build(path: Path, count: int, signer: Signer) -> None:
    """Bulk-append `count` rows plus checkpoints, exactly as the store would hash and index them."""
    store = SqliteStore(str(path))
    db = store.db
    frontier, prev_hash, seq, prev_cp = Frontier(), GENESIS_HASH, 0, None
    spend: dict[tuple[int, str], list[int]] = {}
    pending: list[tuple] = []

    def append(entry: dict) -> None:
        nonlocal prev_hash, seq
        seq += 1
        entry["seq"] = seq
        body = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
        digest = chain_hash(prev_hash, body)
        pending.append((seq, body.decode(), prev_hash, digest, *(entry.get(k) for k in LEDGER_COLUMNS.values())))
        frontier.append(bytes.fromhex(digest))
        prev_hash = digest

    db.execute("BEGIN")
    for entry in bodies(count):
        append(entry)
        day = int(datetime.fromisoformat(entry["ts"]).timestamp()) // 86400
        totals = spend.setdefault((day, entry.get("department", "")), [0, 0, 0])
        if entry["kind"] == "settle":
            totals[0] += 123_000
            totals[1] += 1
        elif entry.get("outcome") == "deny":
            totals[2] += 1
        if seq % CHECKPOINT_EVERY == 0:
            checkpoint = make_checkpoint(frontier.copy(), prev_cp, signer, datetime.fromisoformat(entry["ts"]),
                                         "acme", covered_hash=prev_hash)
            append(checkpoint)
            prev_cp = checkpoint
        if len(pending) >= BATCH:
            db.executemany(INSERT, pending)
            pending.clear()
    db.executemany(INSERT, pending)
    db.executemany("INSERT INTO spend (day, department, employee, project, customer, feature, workflow, key_id, "
                   "model, cost, requests, denied) VALUES (?, ?, '', '', '', '', '', '', 'gpt-4o-mini', ?, ?, ?)",
                   [(day, dept, *totals) for (day, dept), totals in spend.items()])
    db.execute("COMMIT")
    asyncio.run(store.close())


def timed(label: str, fn):
    started = time.perf_counter()
    result = fn()
    print(f"{label:<34} {time.perf_counter() - started:8.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/p402-ledger-scale")
    parser.add_argument("--keep", action="store_true", help="keep the database and export afterwards")
    args = parser.parse_args()
    workdir = Path(args.dir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    db_path, export_path = workdir / "p402.db", workdir / "ledger.jsonl"
    signer = Signer.generate()

    timed(f"build {args.events:,} events", lambda: build(db_path, args.events, signer))
    store = SqliteStore(str(db_path))
    rows = store.db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    print(f"{'ledger rows (with checkpoints)':<34} {rows:>10,}   db {db_path.stat().st_size / 1e6:,.0f} MB")

    report = timed("verify (store.chain)", lambda: verify_rows(store.chain(), signer.public_key))
    assert report.ok, report.summary()
    sealed = asyncio.run(latest_checkpoint(store))
    timed("export jsonl", lambda: write_lines(jsonl_lines(store.chain(), signer=signer, sealed=sealed,
                                                         total=rows), export_path))
    print(f"{'export size':<34} {export_path.stat().st_size / 1e6:8.0f} MB")
    offline = timed("verify_export (offline)", lambda: verify_export(export_path, signer.public_key))
    assert offline.ok, offline.summary()
    sealer = Checkpointer(signer, "acme")
    timed("checkpointer resume + seal", lambda: asyncio.run(
        sealer.maybe_seal(store, START + timedelta(days=31))))
    first_day, last_day = int(START.timestamp()) // 86400, int(START.timestamp()) // 86400 + 31
    spend = timed("spend by department (31 days)", lambda: asyncio.run(
        store.spend("department", first_day, last_day)))
    print(f"{'departments in spend result':<34} {len(spend):>10}")
    print(f"{'peak memory (max RSS)':<34} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.0f} MB")
    asyncio.run(store.close())
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
