"""Building real ledgers in real SQLite stores for the prove tests.

Bodies carry the fields the gateway writes (SPEC §2.5): attribution, model,
outcome, deny code, reason, recovery, money as decimal strings, tokens, policy
version, hold and ref. Rows are appended with `store.record`, the store's own
append path, so hashes and columns are exactly what production writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Coroutine, TypeVar

from p402.core.ids import new_id
from p402.core.ledger import GENESIS_HASH, chain_hash
from p402.prove.checkpoints import Checkpointer
from p402.prove.rows import iso
from p402.stores.sqlite import SqliteStore

T = TypeVar("T")
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=timezone.utc)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def who(employee: str = "alice", department: str = "eng", key: str = "k-alice", **extra: str) -> dict[str, str]:
    base = {"tenant": "acme", "department": department, "employee": employee, "key": key, "customer": "",
            "project": "", "feature": "", "workflow": ""}
    base.update(extra)
    return base


def decision(ts: datetime, attribution: dict[str, str] | None = None, *, model: str = "gpt-4o-mini",
             provider: str = "openai", outcome: str = "allow", estimate_usd: str = "0.00015",
             input_tokens: int = 200, max_tokens: int | None = 200, deny_code: str | None = None,
             reason: str = "within budget", recovery: dict[str, Any] | None = None,
             binding: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "decision", "event_id": new_id("evt", ts), "ts": iso(ts),
                            **(attribution or who()), "model": model, "provider": provider, "outcome": outcome,
                            "deny_code": deny_code, "reason": reason, "recovery": recovery or {},
                            "estimate_usd": estimate_usd, "cost_usd": None, "input_tokens": input_tokens,
                            "output_tokens": None, "max_tokens": max_tokens, "policy_version": 1,
                            "hold_id": new_id("hold", ts) if outcome == "allow" else None, "ref": None,
                            "flags": []}
    if binding is not None:
        body["binding"] = binding
    body.update(extra)
    return body


def settlement(ts: datetime, of: dict[str, Any], cost_usd: str = "0.00012", *, kind: str = "settle",
               input_tokens: int = 200, output_tokens: int = 150, flags: list[str] | None = None) -> dict[str, Any]:
    """A settlement row as the gateway writes it: its own ids, a ref to the decision, the actual usage."""
    return {"kind": kind, "event_id": new_id("evt", ts), "ts": iso(ts), "tenant": of["tenant"],
            "ref": of["event_id"], "hold_id": of["hold_id"], "model": of["model"], "provider": of["provider"],
            "estimate_usd": of["estimate_usd"], "cost_usd": cost_usd, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "flags": flags or [], "policy_version": of["policy_version"]}


async def record_calls(store: SqliteStore, count: int, start: datetime = T0, step: timedelta = timedelta(seconds=7),
                       checkpointer: Checkpointer | None = None) -> datetime:
    """Append `count` calls (a decision and its settlement each); every 5th call is a denial.

    With a checkpointer, `maybe_seal` runs after each call at the simulated time.
    Returns the time after the last call.
    """
    now = start
    people = [who(), who("bob", key="k-bob"), who("carol", "sales", "k-carol", project="apollo")]
    for i in range(count):
        attribution = people[i % len(people)]
        if i % 5 == 4:
            await store.record(decision(now, attribution, outcome="deny", deny_code="BUDGET_EXCEEDED",
                                        reason="department:eng monthly budget would be exceeded",
                                        recovery={"action": "wait_for_reset", "detail": "resets at month end",
                                                  "retry_after_s": 3600}, estimate_usd="0.00015"))
        else:
            made = decision(now, attribution)
            await store.record(made)
            await store.record(settlement(now + timedelta(seconds=2), made, cost_usd=f"0.000{100 + i % 50}"))
        now += step
        if checkpointer is not None:
            await checkpointer.maybe_seal(store, now)
    return now


def rehash_from(db_path: Path, first_seq: int) -> None:
    """What a capable attacker does after editing row `first_seq`: recompute every later hash."""
    db = sqlite3.connect(db_path)
    try:
        row = db.execute("SELECT hash FROM ledger WHERE seq = ?", (first_seq - 1,)).fetchone()
        prev = row[0] if row else GENESIS_HASH
        for seq, body in db.execute("SELECT seq, body FROM ledger WHERE seq >= ? ORDER BY seq",
                                    (first_seq,)).fetchall():
            digest = chain_hash(prev, body.encode())
            db.execute("UPDATE ledger SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
            prev = digest
        db.commit()
    finally:
        db.close()
