"""The hot-path shortcuts give exactly what the plain computations give.

`Policy.budgets_for` (a lookup by scope) must equal the linear scan it
replaced, in order; `window_for`'s memo must equal a fresh calendar
computation at every instant, across window boundaries and timezones; ids
keep their layout and time order.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from p402.core import periods
from p402.core.ids import new_id
from p402.core.periods import PERIODS, window_for
from p402.core.policy import Budget, Policy
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
