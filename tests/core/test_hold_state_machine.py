"""The reserve / settle / release / expire state machine, on the real SQLite store.

Hypothesis drives random sequences; after every step `settled + reserved <= cap
+ overruns` for every counter, reserved equals the sum of live holds, and the
ledger's hash chain verifies.
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
from p402.core.policy import Budget, ModelSpec, Policy, Price
from p402.core.scopes import Attribution, Scope
from p402.pipeline.records import decision_entry, iso
from p402.stores.sqlite import SqliteStore

MODEL = ModelSpec("m", "simulated", "m", frozenset({"chat"}), Price(1_000_000_000, 1_000_000_000))  # 1000 nanos/token
CAPS = {"tenant": 200_000, "dept": 120_000, "alice": 60_000}
LEASE_S = 60.0


class Holds(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.store = SqliteStore(str(Path(self.dir.name) / "p.db"))
        self.now = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
        self.policy = Policy(version=1, tenant="acme", models={"m": MODEL}, budgets=(
            Budget("tenant", Scope("tenant", "acme"), CAPS["tenant"], "total"),
            Budget("dept", Scope("department", "eng"), CAPS["dept"], "total"),
            Budget("alice", Scope("department", "eng"), CAPS["alice"], "total", per="employee")))
        self.live: dict[str, int] = {}  # hold id -> reserved amount
        self.overrun = 0
        self.loop = asyncio.new_event_loop()

    def teardown(self) -> None:
        if hasattr(self, "loop"):
            self.loop.run_until_complete(self.store.close())
            self.loop.close()
            self.dir.cleanup()

    def _run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    @rule(employee=st.sampled_from(["alice", "bob"]), max_tokens=st.integers(1, 40), input_tokens=st.integers(0, 10))
    def reserve(self, employee: str, max_tokens: int, input_tokens: int) -> None:
        who = Attribution("acme", "k", "eng", employee)
        a = Ask(who, MODEL, input_tokens, max_tokens, True, self.now)
        plan = prepare(a, self.policy)
        assert isinstance(plan, Plan)
        d, hold = self._run(self.store.reserve(plan, decide, lambda dd, h: decision_entry(
            f"evt_{len(self.live)}", self.now, a, "chat", dd, 1, h), LEASE_S, self.now))
        if d.allowed:
            assert hold is not None
            self.live[hold] = d.estimate_nanos
        else:
            assert d.deny_code == "BUDGET_EXCEEDED" and hold is None

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), fraction=st.floats(0, 1.5))
    def settle(self, data: st.DataObject, fraction: float) -> None:
        hold = list(self.live)[data.draw(st.integers(0, len(self.live) - 1))]  # insertion order: ids are random
        amount = self.live.pop(hold)
        cost = int(amount * fraction)
        self.overrun += max(cost - amount, 0) * 3  # an overrun lands on each of the hold's three counters at most
        assert self._run(self.store.settle(hold, cost, {"event_id": "e", "ts": iso(self.now), "kind": "settle"}))

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        hold = list(self.live)[data.draw(st.integers(0, len(self.live) - 1))]  # insertion order: ids are random
        self.live.pop(hold)
        assert self._run(self.store.settle(hold, 0, {"event_id": "e", "ts": iso(self.now), "kind": "release"}))
        assert not self._run(self.store.settle(hold, 0, {"event_id": "e", "ts": iso(self.now), "kind": "release"}))

    @rule(seconds=st.integers(1, 90))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        expired = self._run(self.store.expire_holds(self.now))
        # Holds older than the lease are settled at their reserved amount (orphaned).
        assert expired <= len(self.live)
        remaining = {r[0] for r in self.store.db.execute("SELECT id FROM holds")}
        self.live = {h: a for h, a in self.live.items() if h in remaining}

    @invariant()
    def within_caps(self) -> None:
        if not hasattr(self, "store"):
            return
        rows = self.store.db.execute("SELECT budget_id, member, settled, reserved FROM counters").fetchall()
        for budget_id, member, settled, reserved in rows:
            assert reserved >= 0
            assert settled + reserved <= CAPS["alice" if budget_id == "alice" else budget_id] + self.overrun
        live_total = sum(self.live.values())
        tenant = [r for r in rows if r[0] == "tenant"]
        assert (tenant[0][3] if tenant else 0) == live_total

    @invariant()
    def ledger_verifies(self) -> None:
        if hasattr(self, "store"):
            _, fault = verify_chain(self.store.chain())
            assert fault is None, fault


TestHolds = Holds.TestCase
TestHolds.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
