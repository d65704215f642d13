"""Many requests race one small budget: the caps hold on one process or many replicas.

PostgreSQL: several PostgresStore instances (replicas, each with its own pool)
on one schema, driven together with asyncio.gather. SQLite: several
SqliteStore instances on one file, each driven from its own thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable

import pytest

from p402.core.decision import Decision
from p402.core.money import parse_usd
from p402.core.policy import CounterKey, Policy
from p402.stores import pgpool
from tests.stores.storekit import ESTIMATE, budget, chain_ok, plan_for, policy, reserve, settle_entry, who

REPLICAS = 4
REQUESTS = 40
Outcome = tuple[Decision, str | None, dict[str, Any]]
Job = Callable[[Any, int], Awaitable[Outcome]]


def race(backend: Any, job: Job, count: int = REQUESTS) -> list[Outcome]:
    """Run `job(store, i)` for i in range(count), spread over REPLICAS store instances at once."""
    stores = [backend.open(pool_size=4) for _ in range(REPLICAS)]
    if backend.kind == "postgres":
        async def everything() -> list[Outcome]:
            # Wait for every request even when one fails, so none is left mid-transaction.
            done = await asyncio.gather(*(job(stores[i % REPLICAS], i) for i in range(count)), return_exceptions=True)
            for item in done:
                if isinstance(item, BaseException):
                    raise item
            return list(done)  # type: ignore[arg-type]
        return backend.run(everything())

    results: list[Outcome | None] = [None] * count
    errors: list[BaseException] = []
    start = threading.Barrier(REPLICAS)

    def worker(r: int) -> None:
        start.wait()  # release every thread together so their transactions interleave
        try:
            for i in range(r, count, REPLICAS):
                results[i] = asyncio.run(job(stores[r], i))
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(REPLICAS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def caps_hold(store: Any, run: Any, pol: Policy, people: list[str]) -> dict[CounterKey, tuple[int, int]]:
    """Every counter the people touch is within its cap; returns the balances."""
    keys = sorted({k for p in people for k in plan_for(pol, who(p)).keys}, key=str)
    balances = run(store.balances(keys))
    caps = {b.id: b.cap_nanos for b in pol.budgets}
    for key, (settled, reserved) in balances.items():
        assert settled + reserved <= caps[key.budget_id], (key, settled, reserved)
    return balances


@pytest.mark.parametrize("people, employee_cap, binding, admits", [
    (["alice", "bob", "carol"], "0.1", "eng-month", 7),  # $0.015 / $0.002 = 7.5: the department binds
    (["alice"], "0.007", "per-employee", 3),  # $0.007 / $0.002 = 3.5: alice's own cap binds
], ids=["department-binds", "employee-binds"])
def test_racing_reservations_admit_exactly_what_the_caps_allow(backend: Any, store: Any, run: Any, people: list[str],
                                                               employee_cap: str, binding: str, admits: int) -> None:
    pol = policy(budget("acme-month", "tenant:acme", "1"), budget("eng-month", "department:eng", "0.015"),
                 budget("per-employee", "department:eng", employee_cap, per="employee"))
    cap = next(b.cap_nanos for b in pol.budgets if b.id == binding)
    assert cap // ESTIMATE == admits

    outcomes = race(backend, lambda s, i: reserve(s, pol, who(people[i % len(people)])))

    admitted = [o for o in outcomes if o[0].allowed]
    assert len(outcomes) == REQUESTS and len(admitted) == admits
    assert all(o[0].binding is not None and o[0].binding.charge.budget.id == binding
               for o in outcomes if not o[0].allowed)
    balances = caps_hold(store, run, pol, people)
    for person in people:
        mine = sum(1 for o in admitted if o[2]["employee"] == person)
        assert balances[plan_for(pol, who(person)).keys[2]] == (0, mine * ESTIMATE)
    assert balances[plan_for(pol, who(people[0])).keys[1]] == (0, admits * ESTIMATE)

    settles = race(backend, lambda s, i: _settle(s, admitted[i]), count=len(admitted))
    assert all(ok for ok, _, _ in settles)
    balances = caps_hold(store, run, pol, people)
    assert all(reserved == 0 for _, reserved in balances.values())
    department = plan_for(pol, who(people[0])).keys[1]
    assert balances[department] == (admits * ESTIMATE, 0)
    assert run(store.live_holds()) == 0
    assert chain_ok(store) == REQUESTS + admits


async def _settle(store: Any, outcome: Outcome) -> Any:
    _, hold, body = outcome
    return await store.settle(hold, ESTIMATE, settle_entry(body, ESTIMATE)), None, body


def test_reservations_and_settlements_interleave_without_deadlock_or_overspend(
        backend: Any, store: Any, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each request settles right after admission, below its estimate, freeing room for others.

    Settlements lock a hold's counters while reservations lock theirs; both in one
    order, so PostgreSQL never has to break a deadlock (counted below).
    """
    contention: list[BaseException] = []
    real_translate = pgpool.translate

    def counting(exc: BaseException, conflict: str | None = None) -> Any:
        translated = real_translate(exc, conflict)
        if isinstance(translated, pgpool.Contention):
            contention.append(exc)
        return translated

    monkeypatch.setattr(pgpool, "translate", counting)
    pol = policy(budget("acme-month", "tenant:acme", "1"), budget("eng-month", "department:eng", "0.015"),
                 budget("per-employee", "department:eng", "0.1", per="employee"))
    people = ["alice", "bob", "carol", "dave"]
    actual = parse_usd("0.0005")

    async def request(s: Any, i: int) -> Outcome:
        decision, hold, body = await reserve(s, pol, who(people[i % len(people)]))
        if decision.allowed:
            assert await s.settle(hold, actual, settle_entry(body, actual))
        return decision, hold, body

    outcomes = race(backend, request)

    admitted = sum(1 for d, _, _ in outcomes if d.allowed)
    cap = parse_usd("0.015")
    # The last admission needed room for a full estimate next to everything settled before it.
    assert admitted >= cap // ESTIMATE
    assert (admitted - 1) * actual + ESTIMATE <= cap
    balances = caps_hold(store, run, pol, people)
    assert balances[plan_for(pol, who("alice")).keys[1]] == (admitted * actual, 0)
    assert run(store.live_holds()) == 0
    assert chain_ok(store) == REQUESTS + admitted
    assert contention == []
