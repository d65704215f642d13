"""What-if: recorded traffic replayed against a proposed budget tree through the real decision code."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import orjson

from p402.core.money import format_usd, parse_usd
from p402.core.policy import Budget, ModelSpec, Policy, Price, Rule
from p402.core.scopes import Scope
from p402.prove.export import jsonl_lines, write_lines
from p402.prove.simulate import simulate
from p402.stores.sqlite import SqliteStore

from .ledgers import T0, decision, record_calls, run, settlement, who

# $0.15 / $0.60 per million tokens: a recorded call (200 in, max 200 out) reserves $0.00015.
MINI = ModelSpec(name="gpt-4o-mini", provider="openai", upstream="gpt-4o-mini", categories=frozenset({"chat"}),
                 price=Price(input=150_000_000, output=600_000_000))


def proposal(*budgets: Budget, rules: tuple[Rule, ...] = ()) -> Policy:
    return Policy(version=2, tenant="acme", models={"gpt-4o-mini": MINI}, budgets=budgets, rules=rules)


def eng_daily(cap_usd: str) -> Budget:
    return Budget(id="eng-day", scope=Scope("department", "eng"), cap_nanos=parse_usd(cap_usd), period="day")


def export(store: SqliteStore, path: Path) -> Path:
    write_lines(jsonl_lines(store.chain()), path)
    return path


def recorded_costs(store: SqliteStore) -> dict[str, int]:
    """Decision event_id -> what its call actually cost, read straight from the ledger."""
    out = {}
    for row in store.chain():
        body = orjson.loads(row.body)
        if body["kind"] in ("settle", "release", "expire"):
            out[body["ref"]] = parse_usd(body["cost_usd"])
    return out


def test_a_tighter_budget_denies_the_calls_that_would_exceed_it_and_counts_the_spend_stopped(
        store: SqliteStore, tmp_path: Path) -> None:
    run(record_calls(store, 30))
    report = simulate(export(store, tmp_path / "l.jsonl"), proposal(eng_daily("0.001")))
    costs = recorded_costs(store)
    assert report.replayed == 24  # every 5th recorded call was a denial and is not replayed
    assert report.denied > 0 and report.by_code == {"BUDGET_EXCEEDED": report.denied}
    assert all(d.who["department"] == "eng" and d.budget_id == "eng-day" for d in report.would_deny)
    assert report.stopped_nanos == sum(costs[d.event_id] for d in report.would_deny)
    assert all(d.stopped_nanos == costs[d.event_id] for d in report.would_deny)
    assert report.recorded_spend_nanos == sum(costs.values())
    # What was still allowed fits the cap: settled eng spend never passes $0.001.
    eng_kept = sum(cost for ref, cost in costs.items() if ref not in {d.event_id for d in report.would_deny}
                   and ref in eng_events(store))
    assert eng_kept <= parse_usd("0.001")
    first = report.would_deny[0]
    assert first.ts.startswith("2026-03-02T") and "would be exceeded" in first.reason
    assert report.as_dict()["stopped_usd"] == format_usd(report.stopped_nanos)
    assert f"{report.denied} would be denied" in report.summary()
    # The summary names who would have been denied, when, on which budget, and what it would have stopped.
    summary = report.summary().splitlines()
    listed = summary[summary.index(f"the first {len(report.would_deny)} that would be denied:") + 1:]
    assert len(listed) == len(report.would_deny)
    assert listed[0].startswith(f"  {first.ts} {first.event_id} ") and "department eng" in listed[0]
    assert f"BUDGET_EXCEEDED on eng-day, ${format_usd(first.stopped_nanos)} stopped" in listed[0]


def eng_events(store: SqliteStore) -> set[str]:
    return {b["event_id"] for b in (orjson.loads(r.body) for r in store.chain())
            if b["kind"] == "decision" and b.get("department") == "eng"}


def test_a_generous_budget_denies_nothing(store: SqliteStore, tmp_path: Path) -> None:
    run(record_calls(store, 12))
    report = simulate(export(store, tmp_path / "l.jsonl"), lambda: proposal(eng_daily("100")))
    assert report.denied == 0 and report.stopped_nanos == 0
    assert report.kept_nanos == report.recorded_spend_nanos > 0


def test_a_reservation_still_open_counts_against_the_next_call(store: SqliteStore, tmp_path: Path) -> None:
    """Two calls in flight at once: the second sees the first's reservation, as the gateway would."""
    first, second = decision(T0), decision(T0 + timedelta(seconds=1), who("bob", key="k-bob"))
    for body in (first, second, settlement(T0 + timedelta(seconds=3), first, "0.00001"),
                 settlement(T0 + timedelta(seconds=4), second, "0.00001")):
        run(store.record(body))
    report = simulate(export(store, tmp_path / "l.jsonl"), proposal(eng_daily("0.0002")))
    assert [d.event_id for d in report.would_deny] == [second["event_id"]]
    assert report.stopped_nanos == parse_usd("0.00001")


def test_policy_rules_and_unknown_models_are_reported(store: SqliteStore, tmp_path: Path) -> None:
    run(record_calls(store, 6))
    run(store.record(decision(T0 + timedelta(hours=1), model="gpt-5-huge")))
    rule = Rule(scope=Scope("department", "eng"), require=("project",))
    report = simulate(export(store, tmp_path / "l.jsonl"), proposal(rules=(rule,)))
    assert set(report.by_code) == {"ATTRIBUTION_REQUIRED"}
    assert all(d.who["department"] == "eng" for d in report.would_deny)
    assert report.unknown_models == {"gpt-5-huge": 1}
    assert "gpt-5-huge" in report.summary()
    assert Decimal(report.as_dict()["kept_usd"]) >= 0


def test_a_call_with_several_choices_is_replayed_with_all_of_them(store: SqliteStore, tmp_path: Path) -> None:
    """OpenAI's `n`: 4 choices of up to 200 tokens reserve $0.00003 + 4 x $0.00012 = $0.00051."""
    one, four = decision(T0), decision(T0 + timedelta(seconds=1), who("bob", key="k-bob"), completions=4,
                                       estimate_usd="0.00051")
    for body in (one, four, settlement(T0 + timedelta(seconds=3), one, "0.00001"),
                 settlement(T0 + timedelta(seconds=4), four, "0.00001")):
        run(store.record(body))
    report = simulate(export(store, tmp_path / "l.jsonl"), proposal(eng_daily("0.0005")))
    assert [d.event_id for d in report.would_deny] == [four["event_id"]]


def test_a_shadow_budget_s_would_be_denials_are_counted_and_said(store: SqliteStore, tmp_path: Path) -> None:
    run(record_calls(store, 30))
    shadow = Budget(id="eng-watch", scope=Scope("department", "eng"), cap_nanos=parse_usd("0.001"), period="day",
                    mode="shadow")
    report = simulate(export(store, tmp_path / "l.jsonl"), proposal(shadow))
    assert report.denied == 0 and report.shadow_hits["eng-watch"] > 0  # shadow: admitted, and counted
    assert (f"  shadow budget eng-watch would have denied {report.shadow_hits['eng-watch']} calls "
            "(shadow: they were admitted)") in report.summary().splitlines()
