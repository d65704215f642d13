"""What every store lays out the same way: the ledger's indexed columns and the spend rollup's keys.

Both stores hash the same bodies and verify with the same `core.ledger.verify_chain`,
so the columns that copy body fields (and are checked against them) are one list.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from p402.pipeline.ports import LedgerFilter

__all__ = ["LEDGER_COLUMNS", "SPEND_KEYS", "HOLD_KEYS", "ledger_query", "hold_context", "spend_row", "is_denial"]

# Ledger columns that copy a body field (column -> body key); verify checks them.
LEDGER_COLUMNS = {"event_id": "event_id", "ts": "ts", "kind": "kind", "deny_code": "deny_code",
                  "department": "department", "employee": "employee", "project": "project",
                  "customer": "customer", "feature": "feature", "workflow": "workflow", "key_id": "key"}
# The attribution a spend rollup row is keyed by (body keys), after its day.
SPEND_KEYS = ("department", "employee", "project", "customer", "feature", "workflow", "key", "model")
# What a hold keeps of its decision (body keys): the rollup's attribution, and the rest of what a
# settlement row says of the request, so that an expiry row can say it too when the request is gone.
HOLD_KEYS = (*SPEND_KEYS, "tenant", "provider")


def hold_context(body: Mapping[str, Any]) -> dict[str, str]:
    """What a hold keeps of its decision's body: the HOLD_KEYS, absent or null as "".
    (Holds opened by an earlier p402 kept only the SPEND_KEYS.)"""
    return {k: body.get(k) or "" for k in HOLD_KEYS}


def spend_row(body: Mapping[str, Any], cost_nanos: int, denied: bool) -> tuple[Any, ...]:
    """A spend rollup row for a ledger body: its UTC day, its attribution, then cost, requests, denials."""
    day = int(datetime.fromisoformat(body["ts"]).timestamp()) // 86400
    return (day, *(body.get(k) or "" for k in SPEND_KEYS), cost_nanos, 0 if denied else 1, 1 if denied else 0)


def is_denial(entry: Mapping[str, Any]) -> bool:
    """A decision row that denied: it counts in the spend rollups' denials."""
    return entry.get("kind") == "decision" and entry.get("outcome") == "deny"
_FILTER_COLUMNS = frozenset(("department", "employee", "project", "customer", "feature", "workflow", "key_id"))


def ledger_query(f: LedgerFilter, mark: str) -> tuple[str, list[object]]:
    """The newest-first ledger query for a filter, with `mark` as the driver's placeholder (? or %s)."""
    where: list[str] = []
    args: list[object] = []
    if f.deny_code:
        where.append(f"deny_code = {mark}"); args.append(f.deny_code)
    if f.kind:
        where.append(f"kind = {mark}"); args.append(f.kind)
    if f.scope_kind and f.scope_kind != "tenant":  # one store holds one tenant
        column = "key_id" if f.scope_kind == "key" else f.scope_kind
        if column not in _FILTER_COLUMNS:  # never interpolate a name that is not ours
            raise ValueError(f"cannot filter events by scope kind {f.scope_kind!r}")
        where.append(f"{column} = {mark}"); args.append(f.scope_id)
    if f.since:
        where.append(f"ts >= {mark}"); args.append(f.since)
    if f.before_seq:
        where.append(f"seq < {mark}"); args.append(f.before_seq)
    sql = "SELECT seq, body, hash, prev_hash FROM ledger"
    if where:
        sql += " WHERE " + " AND ".join(where)
    args.append(f.limit)
    return sql + f" ORDER BY seq DESC LIMIT {mark}", args
