"""The hot-path shortcuts give exactly what the plain computations give.

`Policy.budgets_for` (a lookup by scope) must equal the linear scan it
replaced, in order; `window_for`'s memo must equal a fresh calendar
computation at every instant, across window boundaries and timezones;
`prepare`'s per-policy memo must answer what a policy without one answers,
whatever time it is; ids keep their layout and time order.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from dataclasses import replace

from p402.core import periods
from p402.core.decision import Ask, Decision, prepare
from p402.core.ids import new_id
from p402.core.periods import PERIODS, window_for
from p402.core.policy import Budget, MandateState, ModelSpec, Override, Policy, Price, Rule
from p402.core.scopes import Attribution, Scope


def _policy(rng: random.Random) -> Policy:
    budgets = []
    for i in range(60):
        kind = rng.choice(["tenant", "department", "employee", "project", "customer", "workflow", "key"])
        ident = "acme" if kind == "tenant" else f"{kind[0]}{rng.randrange(4)}"
        cats = rng.choice([None, frozenset({"premium"}), frozenset({"chat", "image"})])
        budgets.append(Budget(id=f"b{i}", scope=Scope(kind, ident), cap_nanos=10**9, period="month",
                              per=rng.choice([None, "employee"]), categories=cats))
    return Policy(version=1, tenant="acme", models={}, budgets=tuple(budgets))


@pytest.mark.parametrize("seed", range(20))
def test_budgets_for_equals_the_linear_scan_in_order(seed: int) -> None:
    rng = random.Random(seed)
    policy = _policy(rng)
    for _ in range(50):
        who = Attribution(tenant="acme", key=f"k{rng.randrange(4)}", department=f"d{rng.randrange(4)}",
                          employee=rng.choice(["", "e0", "e1", "e2"]), project=rng.choice(["", "p0", "p3"]),
                          customer=rng.choice(["", "c1"]), workflow=rng.choice(["", "w2"]))
        cats = rng.choice([frozenset({"chat"}), frozenset({"premium", "chat"}), frozenset()])
        assert policy.budgets_for(who, cats) == [b for b in policy.budgets if b.applies_to(who, cats)]


@pytest.mark.parametrize("tz", [timezone.utc, ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata")])
def test_memoised_windows_equal_fresh_ones_across_boundaries(tz: object) -> None:
    periods._LAST.clear()
    start = datetime(2026, 3, 28, 21, 59, 59, tzinfo=timezone.utc)  # a DST change and a month end nearby
    moments = [start + timedelta(minutes=17 * i, seconds=i % 3) for i in range(800)]
    moments += [datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc) + timedelta(minutes=m) for m in range(0, 180, 7)]
    for now in moments:
        for period in PERIODS:
            if period == "request":
                continue
            got = window_for(period, now, tz)  # type: ignore[arg-type]
            fresh = periods._window_for(period, now, tz)  # type: ignore[arg-type]
            assert (got.start, got.end) == (fresh.start, fresh.end), (period, now)
            assert got.start <= now and (got.end is None or now < got.end)


def test_ids_keep_their_layout_and_sort_by_time() -> None:
    t0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
    ids = [new_id("evt", t0 + timedelta(milliseconds=i)) for i in range(0, 5000, 7)]
    assert all(re.fullmatch(r"evt_[0-9A-HJKMNP-TV-Z]{26}", i) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # The first 10 characters are the millisecond timestamp, as in a ULID.
    assert new_id("x", datetime.fromtimestamp(0, timezone.utc))[2:12] == "0" * 10


T0 = datetime(2026, 12, 31, 22, tzinfo=timezone.utc)


def _rich_policy(rng: random.Random) -> Policy:
    """Budgets of every period, mandates that start, end, are revoked or badly signed, overrides
    that come and go, rules, declared ids and unpriced or premium models."""
    budgets, mandates, overrides = [], {}, []
    for i in range(12):
        kind = rng.choice(["tenant", "department", "employee", "project", "workflow"])
        ident = "acme" if kind == "tenant" else f"{kind[0]}{rng.randrange(3)}"
        budget = Budget(id=f"b{i}", scope=Scope(kind, ident), cap_nanos=rng.randrange(1, 10**9),
                        period=rng.choice(PERIODS), per=rng.choice([None, None, "employee", "project"]),
                        categories=rng.choice([None, None, frozenset({"premium"})]),
                        mode=rng.choice(["enforce", "enforce", "shadow"]),
                        requires_mandate=kind != "tenant" and rng.random() < 0.25, owner="0x" + "1" * 40)
        budgets.append(budget)
        if budget.requires_mandate and rng.random() < 0.9:
            start = T0 + timedelta(minutes=rng.randrange(-300, 60))
            mandates[budget.id] = MandateState(f"0x{i:064x}", budget.id, start, start + timedelta(hours=rng.randrange(1, 6)),
                                               signature_ok=rng.random() < 0.9, revoked=rng.random() < 0.05)
        if rng.random() < 0.4:
            start = T0 + timedelta(minutes=rng.randrange(-240, 60))
            overrides.append(Override(budget.id, rng.randrange(1, 10**8), start, start + timedelta(hours=1)))
    rules = (Rule(Scope("department", "d1"), deny_categories=frozenset({"premium"})),
             Rule(Scope("department", "d2"), require=("project",)))
    models = {"cheap": ModelSpec("cheap", "openai", "cheap", frozenset({"chat"}), Price(150_000_000, 600_000_000)),
              "big": ModelSpec("big", "openai", "big", frozenset({"chat", "premium"}), Price(10**10, 3 * 10**10)),
              "free-ish": ModelSpec("free-ish", "openai", "free-ish", frozenset({"chat"}), None)}
    return Policy(version=1, tenant="acme", models=models, budgets=tuple(budgets), rules=rules, mandates=mandates,
                  overrides=tuple(overrides), known={"project": frozenset({"p0", "p1"})},
                  timezone=rng.choice([timezone.utc, ZoneInfo("America/New_York")]))


@pytest.mark.parametrize("seed", range(12))
def test_prepare_with_its_memo_answers_what_a_fresh_policy_answers_at_every_moment(seed: int) -> None:
    rng = random.Random(seed)
    policy = _rich_policy(rng)
    people = [Attribution("acme", f"k{i}", f"d{rng.randrange(3)}", f"e{rng.randrange(3)}", rng.choice(["", "w0"]),
                          "", rng.choice(["", "p0", "p1", "p2"])) for i in range(8)]
    now = T0 - timedelta(hours=4)
    outcomes: set[str] = set()
    for _ in range(400):
        # Across hour, day, month and year boundaries, and mandates' and overrides' starts and ends.
        now += timedelta(seconds=rng.choice([1, 59, 600, 1800]))
        model = rng.choice(["cheap", "cheap", "cheap", "big", "free-ish"])
        ask = Ask(rng.choice(people), policy.models[model], 100, 50, True, now,
                  presented_mandate=rng.choice([None, None, None, f"0x{rng.randrange(12):064x}"]))
        got = prepare(ask, policy)
        assert got == prepare(ask, replace(policy)), (ask.who, ask.model.name, now)
        outcomes.add(got.deny_code or "" if isinstance(got, Decision) else "plan")
    assert "plan" in outcomes and len(outcomes) >= 3, outcomes  # the memo was asked more than one thing
    assert 0 < len(policy.memo) <= len(people) * len(policy.models)


def test_ids_never_repeat_across_a_fork_or_after_someone_seeds_random() -> None:
    import os
    now = datetime.now(timezone.utc)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked worker, drawing in the same millisecond as its parent
        os.write(write, "".join(new_id("evt", now) for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        theirs = f.read()
    mine = [new_id("evt", now) for _ in range(100)]
    assert not {theirs[i:i + 30] for i in range(0, len(theirs), 30)} & set(mine)
    random.seed(42)  # a library seeding the global generator does not make ids repeat
    first = new_id("evt", now)
    random.seed(42)
    assert new_id("evt", now) != first


@pytest.mark.parametrize("seed", range(5))
def test_ledger_timestamps_are_isoformat_to_the_millisecond(seed: int) -> None:
    from p402.core.periods import ledger_ts
    rng = random.Random(seed)
    for _ in range(2000):
        moment = datetime(2000, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=rng.randrange(10**17 // 3))
        for zone in (timezone.utc, ZoneInfo("Asia/Kolkata"), timezone(timedelta(hours=-7))):
            local = moment.astimezone(zone)
            expected = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            assert ledger_ts(local) == expected
