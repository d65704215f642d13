"""One step of the hash-chain check, shared by the auditor and the checkpointer.

This is `p402.core.ledger.verify_chain` unrolled to a single row, so that a caller
walking millions of rows can also look at each parsed body (to find checkpoints)
without parsing it twice. The problems are worded exactly as `verify_chain` words
them, so the CLI says the same thing whichever path found the fault.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson

from p402.core.ledger import ChainRow, chain_hash
from p402.core.periods import ledger_ts

__all__ = ["check_link", "check_row", "iso", "parse_ts"]


def check_link(row: ChainRow, prev_hash: str, expected_seq: int) -> str | None:
    """None when `row` sits at `expected_seq`, links to `prev_hash` and hashes to its own hash; else the problem.

    What a checkpoint signs (the chain of hashes) needs no more than this; `check_row` adds the body's own checks."""
    if row.seq != expected_seq:
        what = "missing" if row.seq > expected_seq else "out of order or duplicated"
        return f"expected row {expected_seq} here; row(s) {what}"
    if row.prev_hash != prev_hash:
        return "prev_hash does not match the previous row's hash (row inserted, deleted or reordered)"
    if chain_hash(prev_hash, row.body) != row.hash:
        return "hash does not match the row's contents (row edited)"
    return None


def check_row(row: ChainRow, prev_hash: str, expected_seq: int) -> tuple[dict[str, Any] | None, str | None]:
    """(parsed body, None) when `row` extends the chain ending in `prev_hash` at `expected_seq`; else (None, problem)."""
    problem = check_link(row, prev_hash, expected_seq)
    if problem is not None:
        return None, problem
    try:
        body = orjson.loads(row.body)
    except orjson.JSONDecodeError:
        return None, "body is not valid JSON"
    if not isinstance(body, dict):
        return None, "body is not a JSON object"
    if body.get("seq") != row.seq:
        return None, "the body's seq differs from the row's position"
    if row.columns:
        for name, value in row.columns.items():
            if body.get(name) != value:
                return None, f"column {name} ({value!r}) differs from the hashed body ({body.get(name)!r})"
    return body, None


iso = ledger_ts  # a ledger timestamp (core.periods.ledger_ts), under the name callers here use


def parse_ts(text: str) -> datetime:
    """Parse a ledger timestamp (`...Z` or an explicit offset) into an aware UTC datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
