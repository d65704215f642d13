"""The SQLite store's state as a fold of the ledger (no I/O here; `p402.stores.sqlite` does the SQL).

Every ledger row that changes state carries its *effects*, a JSON object:

    {"c": [[budget_id, member, window, settled_delta, reserved_delta], ...],   counters
     "h": [hold_id, event_id, amount, [[budget_id, member, window], ...],      a hold opened
           expires_at, {context}],                                       context: layout.hold_context
     "x": hold_id,                                                             a hold closed
     "s": [day, department, employee, project, customer, feature, workflow,   a spend rollup
           key_id, model, cost, requests, denied]}

`Fold` applies them in ledger order. It keeps exact balances for the counters
it has been asked about, every live hold, and the counter and spend deltas of
the rows after `written_seq` (the row up to which the tables hold the fold), so the
tables can be brought up to date in one batch.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

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
    context: dict[str, Any]  # what it kept of its decision (layout.hold_context): attribution, model, provider

    @property
    def department(self) -> str:
        return self.context.get("department") or ""


class Fold:
    """One connection's view of the store, kept current by applying every ledger row's effects."""

    def __init__(self) -> None:
        self.seq, self.hash = 0, GENESIS_HASH  # the last row applied, and its hash
        self.written_seq = 0  # the tables hold the effects of rows up to here
        self.counters: dict[Key, tuple[int, int]] = {}  # exact (settled, reserved) as of `seq`
        self.holds: dict[str, Hold] = {}  # every live hold as of `seq`
        self.counter_deltas: dict[Key, list[int]] = {}  # rows in (written_seq, seq], summed per counter
        self.spend_deltas: dict[SpendKey, list[int]] = {}  # the same for the spend rollups
        self.rows: list[tuple[int, dict[str, Any]]] = []  # those rows' effects, in order

    def restart(self, written_seq: int, head_hash: str, holds: dict[str, Hold]) -> None:
        """Start again from the tables, which hold the fold up to row `written_seq`."""
        self.seq, self.hash, self.written_seq = written_seq, head_hash, written_seq
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
        counters = self.counters
        for budget_id, member, window, settled, reserved in effects.get("c", ()):
            known = counters.get((budget_id, member, window))
            if known is not None:
                counters[(budget_id, member, window)] = (known[0] + settled, known[1] + reserved)
        opened = effects.get("h")
        if opened is not None:
            hold_id, event_id, amount, keys, expires_at, context = opened
            self.holds[hold_id] = Hold(event_id, amount, tuple((k[0], k[1], k[2]) for k in keys), expires_at,
                                       context)
        closed = effects.get("x")
        if closed is not None:
            self.holds.pop(closed, None)
        self._add_deltas(effects, 1)
        self.rows.append((seq, effects))

    def written_through(self, upto: int) -> None:
        """Another connection wrote the fold into the tables up to row `upto`: drop those deltas.
        (Holds need nothing: a write-out copies them whole.)"""
        done = 0
        while done < len(self.rows) and self.rows[done][0] <= upto:
            self._add_deltas(self.rows[done][1], -1)
            done += 1
        del self.rows[:done]
        self.written_seq = max(self.written_seq, upto)

    def _add_deltas(self, effects: dict[str, Any], sign: int) -> None:
        # Sums that reach zero stay: later rows may add to them (a write-out skips zeros).
        for budget_id, member, window, settled, reserved in effects.get("c", ()):
            _add(self.counter_deltas, (budget_id, member, window), (settled, reserved), sign)
        spend = effects.get("s")
        if spend is not None:
            _add(self.spend_deltas, tuple(spend[:9]), spend[9:], sign)

    def written(self) -> None:
        """This connection wrote the fold into the tables up to `seq`."""
        self.counter_deltas.clear()
        self.spend_deltas.clear()
        self.rows.clear()
        self.written_seq = self.seq

    def balance(self, key: Key, in_table: tuple[int, int]) -> tuple[int, int]:
        """A counter's exact balance from its table row (as of `written_seq`) and the deltas since; remembered."""
        sums = self.counter_deltas.get(key)
        value = (in_table[0] + sums[0], in_table[1] + sums[1]) if sums else in_table
        self.counters[key] = value
        return value

    def counter_changes(self) -> list[tuple[str, str, int, int, int]]:
        return [(*k, s[0], s[1]) for k, s in self.counter_deltas.items() if s[0] or s[1]]

    def spend_changes(self) -> list[tuple[Any, ...]]:
        return [(*k, *s) for k, s in self.spend_deltas.items() if any(s)]


def _add(sums: dict[Any, list[int]], key: Any, values: Sequence[int], sign: int) -> None:
    known = sums.get(key)
    if known is None:
        sums[key] = [sign * v for v in values]
    else:
        for i, v in enumerate(values):
            known[i] += sign * v


def parse_effects(text: str) -> dict[str, Any]:
    """A row's effects column. Only its outline is checked here: a row of another shape makes
    `Fold.apply` raise, and the store treats either as a file changed outside p402."""
    doc = orjson.loads(text)  # orjson.JSONDecodeError is a ValueError
    if not isinstance(doc, dict) or not set(doc) <= {"c", "h", "x", "s"}:
        raise ValueError("not an effects object")
    return doc
