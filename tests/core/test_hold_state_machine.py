"""The reserve / settle / release / expire state machine, on the real SQLite store.

Hypothesis drives random sequences against a model kept beside the store: each
counter's settled and reserved amounts, and each live hold with the moment it was
reserved. Up to three store instances (replicas) share the file, and each step
runs on one of them. After every step every replica's balances and the holds
equal the model's exactly; whenever the counters and holds tables are written
out, they equal the model too; a request is admitted exactly when it fits every counter; a hold
is expired exactly when its lease ran out; `settled + reserved <= cap + that
counter's own overruns`; and the ledger's hash chain verifies.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from p402.core.decision import Ask, Plan, decide, prepare
from p402.core.ledger import verify_chain
from p402.core.policy import Budget, CounterKey, ModelSpec, Policy, Price
from p402.core.scopes import Attribution, Scope
from p402.pipeline.records import decision_entry, iso
from p402.stores.sqlite import SqliteStore

MODEL = ModelSpec("m", "simulated", "m", frozenset({"chat"}), Price(1_000_000_000, 1_000_000_000))  # 1000 nanos/token
CAPS = {"tenant": 200_000, "dept": 120_000, "alice": 60_000}
LEASE_S = 60.0
REPLICAS = 3
replica = st.integers(0, REPLICAS - 1)


class Holds(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.path = str(Path(self.dir.name) / "p.db")
        self.stores = [SqliteStore(self.path)]
        self.now = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
        self.policy = Policy(version=1, tenant="acme", models={"m": MODEL}, budgets=(
            Budget("tenant", Scope("tenant", "acme"), CAPS["tenant"], "total"),
            Budget("dept", Scope("department", "eng"), CAPS["dept"], "total"),
            Budget("alice", Scope("department", "eng"), CAPS["alice"], "total", per="employee")))
        self.live: dict[str, tuple[int, datetime, tuple[tuple[str, str], ...]]] = {}  # hold -> amount, when, counters
        self.counters: dict[tuple[str, str], list[int]] = {}  # (budget, member) -> [settled, reserved]
        self.overruns: dict[tuple[str, str], int] = {}
        self.loop = asyncio.new_event_loop()

    def teardown(self) -> None:
        if hasattr(self, "loop"):
            for store in self.stores:
                self.loop.run_until_complete(store.close())
            self.loop.close()
            self.dir.cleanup()

    def _run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def _on(self, replica: int) -> SqliteStore:
        return self.stores[replica % len(self.stores)]

    def _cap(self, budget_id: str) -> int:
        return CAPS["alice" if budget_id == "alice" else budget_id]

    def _close(self, hold: str, cost: int) -> None:
        amount, _, keys = self.live.pop(hold)
        for key in keys:
            counter = self.counters[key]
            counter[0] += cost
            counter[1] -= amount
            self.overruns[key] = self.overruns.get(key, 0) + max(cost - amount, 0)

    @precondition(lambda self: len(self.stores) < REPLICAS)
    @rule()
    def replica_joins(self) -> None:
        self.stores.append(SqliteStore(self.path))

    @rule(on=replica)
    def counters_are_written_out(self, on: int) -> None:
        self._run(self._on(on).write_out())
        table = {(b, m): [s, r] for b, m, s, r in
                 self._on(on).db.execute("SELECT budget_id, member, settled, reserved FROM counters")}
        # A counter whose effects cancelled out before any write-out may have no row: it is zero.
        assert {k: v for k, v in table.items() if v != [0, 0]} == {k: v for k, v in self.counters.items()
                                                                    if v != [0, 0]}
        assert {r[0] for r in self._on(on).db.execute("SELECT id FROM holds")} == set(self.live)

    @rule(employee=st.sampled_from(["alice", "bob"]), max_tokens=st.integers(1, 40), input_tokens=st.integers(0, 10),
          on=replica)
    def reserve(self, employee: str, max_tokens: int, input_tokens: int, on: int) -> None:
        who = Attribution("acme", "k", "eng", employee)
        a = Ask(who, MODEL, input_tokens, max_tokens, True, self.now)
        plan = prepare(a, self.policy)
        assert isinstance(plan, Plan)
        d, hold = self._run(self._on(on).reserve(plan, decide, lambda dd, h: decision_entry(
            f"evt_{len(self.live)}", self.now, a, "chat", dd, 1, h), LEASE_S, self.now))
        keys = tuple((k.budget_id, k.member) for k in plan.keys)
        fits = all(sum(self.counters.get(k, [0, 0])) + d.estimate_nanos <= self._cap(k[0]) for k in keys)
        assert d.allowed == fits, (d.reason, keys, self.counters)
        if d.allowed:
            assert hold is not None
            self.live[hold] = (d.estimate_nanos, self.now, keys)
            for k in keys:
                self.counters.setdefault(k, [0, 0])[1] += d.estimate_nanos
        else:
            assert d.deny_code == "BUDGET_EXCEEDED" and hold is None

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), fraction=st.floats(0, 1.5), on=replica)
    def settle(self, data: st.DataObject, fraction: float, on: int) -> None:
        hold = list(self.live)[data.draw(st.integers(0, len(self.live) - 1))]  # insertion order: ids are random
        cost = int(self.live[hold][0] * fraction)
        assert self._run(self._on(on).settle(hold, cost, {"event_id": "e", "ts": iso(self.now), "kind": "settle"}))
        self._close(hold, cost)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), on=replica)
    def release(self, data: st.DataObject, on: int) -> None:
        hold = list(self.live)[data.draw(st.integers(0, len(self.live) - 1))]  # insertion order: ids are random
        assert self._run(self._on(on).settle(hold, 0, {"event_id": "e", "ts": iso(self.now), "kind": "release"}))
        self._close(hold, 0)
        assert not self._run(self._on(on + 1).settle(hold, 0, {"event_id": "e", "ts": iso(self.now),
                                                                "kind": "release"}))

    @rule(ms=st.integers(1, 90_000), on=replica)
    def time_passes(self, ms: int, on: int) -> None:
        self._expire_at(self.now + timedelta(milliseconds=ms), on)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), offset_ms=st.sampled_from([-1, 0, 1]), on=replica)
    def time_reaches_a_lease_end(self, data: st.DataObject, offset_ms: int, on: int) -> None:
        # To a millisecond of a lease's end: a hold whose lease ends exactly now is still live.
        hold = list(self.live)[data.draw(st.integers(0, len(self.live) - 1))]
        moment = self.live[hold][1] + timedelta(seconds=LEASE_S, milliseconds=offset_ms)
        if moment > self.now:
            self._expire_at(moment, on)

    def _expire_at(self, moment: datetime, on: int) -> None:
        self.now = moment
        due = [h for h, (_, at, _) in self.live.items() if at + timedelta(seconds=LEASE_S) < self.now]
        # Exactly the holds whose lease ran out are settled, at their reserved amount (orphaned).
        assert self._run(self._on(on).expire_holds(self.now)) == len(due)
        for hold in due:
            self._close(hold, self.live[hold][0])

    @invariant()
    def store_equals_the_model(self) -> None:
        if not hasattr(self, "stores"):
            return
        keys = [CounterKey(b, m, 0) for b, m in self.counters]  # `total` budgets: one window, starting at 0
        for store in self.stores:
            balances = self._run(store.balances(keys))
            assert {(k.budget_id, k.member): list(v) for k, v in balances.items()} == self.counters
            assert self._run(store.live_holds()) == len(self.live)
        for key, (settled, reserved) in self.counters.items():
            assert reserved >= 0
            assert settled + reserved <= self._cap(key[0]) + self.overruns.get(key, 0)

    @invariant()
    def ledger_verifies(self) -> None:
        if hasattr(self, "stores"):
            _, fault = verify_chain(self.stores[0].chain())
            assert fault is None, fault


TestHolds = Holds.TestCase
TestHolds.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
