"""The SQLite store's state as a fold of the ledger (no I/O here; `p402.stores.sqlite` does the SQL).

Every ledger row that changes state carries its *effects*, a JSON object:

    {"c": [[budget_id, member, window, settled_delta, reserved_delta], ...],   counters
     "h": [hold_id, event_id, amount, [[budget_id, member, window], ...],      a hold opened
           expires_at, {attribution}],
     "x": hold_id,                                                             a hold closed
     "s": [day, department, employee, project, customer, feature, workflow,   a spend rollup
           key_id, model, cost, requests, denied]}

`Fold` applies them in ledger order. It keeps exact balances for the counters
it has been asked about, every live hold, and the counter and spend deltas of
the rows after `flushed` (the row up to which the tables hold the fold), so the
tables can be brought up to date in one batch.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple

import orjson

from p402.core.ledger import GENESIS_HASH

__all__ = ["Fold", "Hold", "Key", "SpendKey", "parse_effects"]

Key = tuple[str, str, int]  # a counter: budget_id, member, window (a CounterKey equals its tuple)
SpendKey = tuple[int, str, str, str, str, str, str, str, str]  # day and the 8 attribution columns


class Hold(NamedTuple):
    """A live reservation."""

    event_id: str
    amount: int
    keys: tuple[Key, ...]
    expires_at: float
    context: dict[str, Any]  # the attribution its settlement's spend rollup is keyed by (SPEND_KEYS)

    @property
    def department(self) -> str:
        return self.context.get("department") or ""


class Fold:
    """One connection's view of the store, kept current by applying every ledger row's effects."""

    def __init__(self) -> None:
        self.seq, self.hash = 0, GENESIS_HASH  # the last row applied, and its hash
        self.flushed = 0  # the tables hold the effects of rows up to here
        self.counters: dict[Key, tuple[int, int]] = {}  # exact (settled, reserved) as of `seq`
        self.holds: dict[str, Hold] = {}  # every live hold as of `seq`
        self.counter_deltas: dict[Key, list[int]] = {}  # rows in (flushed, seq], summed per counter
        self.spend_deltas: dict[SpendKey, list[int]] = {}  # the same for the spend rollups
        self.rows: list[tuple[int, dict[str, Any]]] = []  # those rows' effects, in order

    def restart(self, flushed: int, head_hash: str, holds: dict[str, Hold]) -> None:
        """Start again from the tables, which hold the fold up to row `flushed`."""
        self.seq, self.hash, self.flushed = flushed, head_hash, flushed
        self.counters.clear()
        self.holds = holds
        self.counter_deltas.clear()
        self.spend_deltas.clear()
        self.rows.clear()

    def apply(self, seq: int, digest: str, effects: dict[str, Any] | None) -> None:
        """Row `seq` (hash `digest`) comes next in the ledger."""
        self.seq, self.hash = seq, digest
        if not effects:
            return
        counters, deltas = self.counters, self.counter_deltas
        for budget_id, member, window, settled, reserved in effects.get("c", ()):
            key = (budget_id, member, window)
            known = counters.get(key)
            if known is not None:
                counters[key] = (known[0] + settled, known[1] + reserved)
            sums = deltas.get(key)
            if sums is None:
                deltas[key] = [settled, reserved]
            else:
                sums[0] += settled
                sums[1] += reserved
        opened = effects.get("h")
        if opened is not None:
            hold_id, event_id, amount, keys, expires_at, context = opened
            self.holds[hold_id] = Hold(event_id, amount, tuple((k[0], k[1], k[2]) for k in keys), expires_at,
                                       context)
        closed = effects.get("x")
        if closed is not None:
            self.holds.pop(closed, None)
        spend = effects.get("s")
        if spend is not None:
            key9 = (spend[0], spend[1], spend[2], spend[3], spend[4], spend[5], spend[6], spend[7], spend[8])
            sums = self.spend_deltas.get(key9)
            if sums is None:
                self.spend_deltas[key9] = [spend[9], spend[10], spend[11]]
            else:
                sums[0] += spend[9]
                sums[1] += spend[10]
                sums[2] += spend[11]
        self.rows.append((seq, effects))

    def written_through(self, upto: int) -> None:
        """Another connection wrote the fold into the tables up to row `upto`: drop those deltas.
        (Zero sums stay: later rows may add to them. Holds need nothing: a write-out copies them whole.)"""
        done = 0
        rows = self.rows
        while done < len(rows) and rows[done][0] <= upto:
            effects = rows[done][1]
            for budget_id, member, window, settled, reserved in effects.get("c", ()):
                sums = self.counter_deltas[(budget_id, member, window)]
                sums[0] -= settled
                sums[1] -= reserved
            spend = effects.get("s")
            if spend is not None:
                sums = self.spend_deltas[(spend[0], spend[1], spend[2], spend[3], spend[4], spend[5], spend[6],
                                          spend[7], spend[8])]
                sums[0] -= spend[9]
                sums[1] -= spend[10]
                sums[2] -= spend[11]
            done += 1
        del rows[:done]
        self.flushed = max(self.flushed, upto)

    def written(self) -> None:
        """This connection wrote the fold into the tables up to `seq`."""
        self.counter_deltas.clear()
        self.spend_deltas.clear()
        self.rows.clear()
        self.flushed = self.seq

    def balance(self, key: Key, in_table: tuple[int, int]) -> tuple[int, int]:
        """A counter's exact balance from its table row (as of `flushed`) and the deltas since; remembered."""
        sums = self.counter_deltas.get(key)
        value = (in_table[0] + sums[0], in_table[1] + sums[1]) if sums else in_table
        self.counters[key] = value
        return value

    def counter_changes(self) -> list[tuple[str, str, int, int, int]]:
        return [(*k, s[0], s[1]) for k, s in self.counter_deltas.items() if s[0] or s[1]]

    def spend_changes(self) -> list[tuple[Any, ...]]:
        return [(*k, *s) for k, s in self.spend_deltas.items() if s[0] or s[1] or s[2]]


def parse_effects(text: str) -> dict[str, Any]:
    """A row's effects column, checked: ValueError if it is not what p402 writes."""
    doc = orjson.loads(text)  # orjson.JSONDecodeError is a ValueError
    if not isinstance(doc, dict) or not set(doc) <= {"c", "h", "x", "s"}:
        raise ValueError("not an effects object")
    for item in doc.get("c", ()):
        if not (isinstance(item, list) and len(item) == 5 and _strs(item[:2]) and _ints(item[2:])):
            raise ValueError(f"not a counter effect: {str(item)[:80]}")
    opened = doc.get("h")
    if opened is not None and not (
            isinstance(opened, list) and len(opened) == 6 and _strs(opened[:2]) and _ints(opened[2:3])
            and isinstance(opened[3], list) and all(isinstance(k, list) and len(k) == 3 and _strs(k[:2])
                                                    and _ints(k[2:]) for k in opened[3])
            and isinstance(opened[4], (int, float)) and isinstance(opened[5], dict)
            and all(v is None or isinstance(v, str) for v in opened[5].values())):
        raise ValueError(f"not a hold: {str(opened)[:80]}")
    if "x" in doc and not isinstance(doc["x"], str):
        raise ValueError("not a hold id")
    spend = doc.get("s")
    if spend is not None and not (isinstance(spend, list) and len(spend) == 12 and _ints(spend[:1])
                                  and _strs(spend[1:9]) and _ints(spend[9:])):
        raise ValueError(f"not a spend rollup: {str(spend)[:80]}")
    return doc


def _strs(values: Iterable[Any]) -> bool:
    return all(isinstance(v, str) for v in values)


def _ints(values: Iterable[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)
