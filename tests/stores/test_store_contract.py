"""The budget store contract, run against every store (SQLite and PostgreSQL).

What a user relies on: a reservation is all-or-nothing across its budgets,
settlement replaces it by the actual cost, orphans are settled at their
reservation, every change is a ledger row on one verifiable chain, and
tampering with that chain is caught at the right row.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from p402.core.decision import decide
from p402.core.ledger import verify_chain
from p402.core.money import format_usd, parse_usd
from p402.errors import Conflict, NotFound
from p402.ops.spend import spend_report
from p402.pipeline.ports import HoldInfo, KeyRecord, LedgerFilter
from tests.stores.storekit import (DAY, ESTIMATE, MODEL, NOW, OTHER_MODEL, budget, chain_ok, decision_entry, iso,
                                   later, plan_for, policy, reserve, settle_entry, who)

# A tenant budget with room, a department budget that fits exactly two requests, a roomy per-employee budget.
TIGHT = policy(budget("acme-month", "tenant:acme", "100"), budget("eng-month", "department:eng", "0.005"),
               budget("per-employee", "department:eng", "1", per="employee"))


def policy_entry(what: str) -> dict[str, Any]:
    return {"event_id": f"evt_{what}", "ts": iso(NOW), "kind": "policy", "reason": what}


def rows(store: Any) -> int:
    return chain_ok(store)


def test_reserve_is_all_or_nothing_across_counters(store: Any, run: Any) -> None:
    first, hold_a, _ = run(reserve(store, TIGHT, who("alice")))
    second, hold_b, _ = run(reserve(store, TIGHT, who("bob")))
    assert first.allowed and second.allowed and hold_a and hold_b
    alice_keys = list(plan_for(TIGHT, who("alice")).keys)
    assert run(store.balances(alice_keys)) == {
        alice_keys[0]: (0, 2 * ESTIMATE), alice_keys[1]: (0, 2 * ESTIMATE), alice_keys[2]: (0, ESTIMATE)}

    carol_keys = list(plan_for(TIGHT, who("carol")).keys)
    before = run(store.balances(carol_keys))
    denied, hold, body = run(reserve(store, TIGHT, who("carol")))

    assert not denied.allowed and hold is None
    assert denied.deny_code == "BUDGET_EXCEEDED"
    assert denied.binding is not None and denied.binding.charge.budget.id == "eng-month"
    # The tenant and carol's own counters had room, yet nothing was reserved on them.
    assert run(store.balances(carol_keys)) == before
    assert before[carol_keys[2]] == (0, 0)
    assert run(store.live_holds()) == 2
    [last] = run(store.events(LedgerFilter(limit=1)))
    assert last.body["event_id"] == body["event_id"]
    assert (last.body["outcome"], last.body["deny_code"]) == ("deny", "BUDGET_EXCEEDED")
    assert rows(store) == 3


@pytest.mark.parametrize("cost_usd", ["0.0015", "0.0031"], ids=["below-estimate", "overrun"])
def test_settle_replaces_the_reservation_by_the_actual_cost(store: Any, run: Any, cost_usd: str) -> None:
    decision, hold, body = run(reserve(store, TIGHT, who("alice")))
    keys = list(plan_for(TIGHT, who("alice")).keys)
    cost = parse_usd(cost_usd)

    assert run(store.settle(hold, cost, settle_entry(body, cost))) is True

    assert run(store.balances(keys)) == {k: (cost, 0) for k in keys}
    assert run(store.live_holds()) == 0
    kinds = [e.body["kind"] for e in run(store.event(body["event_id"]))]
    assert kinds == ["decision", "settle"]
    assert rows(store) == 2


def test_settle_with_zero_releases_the_reservation(store: Any, run: Any) -> None:
    _, hold, body = run(reserve(store, TIGHT, who("alice")))
    keys = list(plan_for(TIGHT, who("alice")).keys)

    assert run(store.settle(hold, 0, settle_entry(body, 0))) is True

    assert run(store.balances(keys)) == {k: (0, 0) for k in keys}
    assert [e.body["kind"] for e in run(store.event(body["event_id"]))] == ["decision", "release"]
    # The released room is usable again: two more requests fit the department.
    assert run(reserve(store, TIGHT, who("bob")))[0].allowed
    assert run(reserve(store, TIGHT, who("carol")))[0].allowed


def test_settling_an_unknown_or_settled_hold_returns_false_and_writes_nothing(store: Any, run: Any) -> None:
    _, hold, body = run(reserve(store, TIGHT, who("alice")))
    assert run(store.settle(hold, ESTIMATE, settle_entry(body, ESTIMATE))) is True
    keys = list(plan_for(TIGHT, who("alice")).keys)
    after_first = run(store.balances(keys))

    assert run(store.settle(hold, ESTIMATE, settle_entry(body, ESTIMATE))) is False
    assert run(store.settle("hold_nonexistent", ESTIMATE, settle_entry(body, ESTIMATE))) is False

    assert run(store.balances(keys)) == after_first
    assert rows(store) == 2


def test_expired_holds_are_settled_at_their_reservation(store: Any, run: Any) -> None:
    _, old_hold, old_body = run(reserve(store, TIGHT, who("alice"), lease_s=30))
    _, young_hold, _ = run(reserve(store, TIGHT, who("bob"), lease_s=600))
    seen: list[HoldInfo] = []

    def orphaned(info: HoldInfo) -> dict[str, Any]:
        seen.append(info)
        return {"event_id": info.event_id, "ts": iso(later(60)), "kind": "expire", "ref": info.event_id,
                "flags": ["orphaned"], "cost_usd": format_usd(info.amount_nanos, 4)}

    assert run(store.expire_holds(later(60), orphaned)) == 1

    [info] = seen
    alice_keys = plan_for(TIGHT, who("alice")).keys
    assert (info.id, info.event_id, info.amount_nanos) == (old_hold, old_body["event_id"], ESTIMATE)
    assert set(info.keys) == set(alice_keys)
    balances = run(store.balances(list(alice_keys)))
    assert balances[alice_keys[1]] == (ESTIMATE, ESTIMATE)  # eng: alice's orphan settled, bob's hold still live
    assert balances[alice_keys[2]] == (ESTIMATE, 0)  # alice's own counter
    rows_of_alice = run(store.event(old_body["event_id"]))
    assert [(e.body["kind"], e.body.get("flags")) for e in rows_of_alice] == [("decision", None),
                                                                             ("expire", ["orphaned"])]
    assert run(store.live_holds()) == 1
    assert run(store.expire_holds(later(60), orphaned)) == 0  # nothing twice

    # Without an entry builder the store writes a plain expire row referring to the decision.
    assert run(store.expire_holds(later(3600))) == 1
    [last] = run(store.events(LedgerFilter(limit=1)))
    assert last.body["kind"] == "expire" and last.body["ref"] != old_body["event_id"]
    assert run(store.live_holds()) == 0 and young_hold is not None
    assert rows(store) == 4


@pytest.mark.parametrize("written_out", [False, True], ids=["in-ledger", "in-holds-table"])
def test_an_expired_hold_hands_its_decision_s_attribution_to_another_replica(backend: Any, run: Any,
                                                                               written_out: bool) -> None:
    crashed = backend.open()
    _, hold, body = run(reserve(crashed, TIGHT, who("alice", project="apollo"), lease_s=30))
    if written_out:
        run(crashed.write_out())  # SQLite: the hold reaches the holds table (PostgreSQL writes it at once)
    seen: list[HoldInfo] = []

    def orphaned(info: HoldInfo) -> dict[str, Any]:
        seen.append(info)
        return {"event_id": info.event_id, "ts": iso(later(60)), "kind": "expire", "ref": info.event_id,
                "flags": ["orphaned"], **{k: v or None for k, v in info.context.items()}}

    survivor = backend.open()
    assert run(survivor.expire_holds(later(60), orphaned)) == 1
    [info] = seen
    assert info.id == hold
    assert {k: info.context[k] for k in ("tenant", "key", "department", "employee", "project", "model")} == {
        "tenant": "acme", "key": "k-alice", "department": "eng", "employee": "alice", "project": "apollo",
        "model": "m-std"}
    assert info.context["customer"] == info.context["workflow"] == ""
    [row] = run(survivor.events(LedgerFilter(scope_kind="project", scope_id="apollo", kind="expire")))
    assert row.body["event_id"] == body["event_id"]
    assert chain_ok(survivor) == 2  # the indexed columns equal the row's body


def test_every_operation_extends_one_verifiable_chain(store: Any, run: Any) -> None:
    steps = [
        lambda: reserve(store, TIGHT, who("alice")),
        lambda: store.record({**policy_entry("note"), "kind": "decision", "outcome": "deny",
                              "deny_code": "CATEGORY_DENIED", "department": "eng"}),
        lambda: store.put_key(KeyRecord(id="k1", tenant="acme", owner_kind="employee", owner_id="alice",
                                        created_at=iso(NOW)), "h1", policy_entry("key")),
        lambda: store.change_objects([("budget", "b", {"cap_usd": "1"})], [policy_entry("b1"), policy_entry("b2")]),
        lambda: store.revoke_key("k1", policy_entry("revoke")),
        lambda: store.expire_holds(later(3600)),
    ]
    expected = [1, 2, 3, 5, 6, 7]
    for step, count in zip(steps, expected):
        run(step())
        assert rows(store) == count
    seqs = [e.seq for e in run(store.events(LedgerFilter(limit=100)))]
    assert seqs == list(range(7, 0, -1))


def _seed_four_rows(store: Any, run: Any) -> None:
    for name in ("alice", "bob"):
        _, hold, body = run(reserve(store, TIGHT, who(name)))
        run(store.settle(hold, ESTIMATE, settle_entry(body, ESTIMATE)))
    assert rows(store) == 4


SWAP_2_AND_3 = ("UPDATE ledger SET seq = -seq WHERE seq IN (2, 3)",
                "UPDATE ledger SET seq = 3 WHERE seq = -2",
                "UPDATE ledger SET seq = 2 WHERE seq = -3")


@pytest.mark.parametrize("statements, bad_seq, problem", [
    (("UPDATE ledger SET body = replace(body, '\"ts\":\"2026', '\"ts\":\"2025') WHERE seq = 2",), 2, "edited"),
    (("DELETE FROM ledger WHERE seq = 2",), 3, "missing"),
    (SWAP_2_AND_3, 2, "prev_hash"),
    (("UPDATE ledger SET department = 'sales' WHERE seq = 3",), 3, "column department"),
], ids=["edit-body", "delete-row", "swap-rows", "edit-indexed-column"])
def test_tampering_is_detected_at_the_right_row(backend: Any, store: Any, run: Any, statements: tuple[str, ...],
                                                bad_seq: int, problem: str) -> None:
    _seed_four_rows(store, run)
    for statement in statements:
        backend.raw(statement)

    _, fault = verify_chain(store.chain())

    assert fault is not None and fault.seq == bad_seq, fault
    assert problem in fault.problem


def _key(ident: str, employee: str) -> KeyRecord:
    return KeyRecord(id=ident, tenant="acme", owner_kind="employee", owner_id=employee, department="eng",
                     employee=employee, created_at=iso(NOW), prefix="p402_" + employee[:2])


def test_keys_are_put_found_and_revoked(store: Any, run: Any) -> None:
    alice, bob = _key("k-alice", "alice"), _key("k-bob", "bob")
    assert run(store.put_key(alice, "hash-a", policy_entry("put-alice"))) is True
    assert run(store.put_key(alice, "hash-a", policy_entry("again"))) is False  # unchanged: no row, no version
    assert run(store.find_key("hash-a")) == alice
    assert run(store.find_key("hash-unknown")) is None
    assert run(store.policy_version()) == 1

    run(store.revoke_key("k-alice", policy_entry("revoke-alice")))
    assert run(store.find_key("hash-a")) == replace(alice, revoked=True)
    assert run(store.list_keys()) == [replace(alice, revoked=True)]
    with pytest.raises(Conflict):
        run(store.revoke_key("k-alice", policy_entry("revoke-twice")))
    with pytest.raises(NotFound):
        run(store.revoke_key("k-nobody", policy_entry("revoke-nobody")))

    with pytest.raises(Conflict):  # a secret identifies exactly one key
        run(store.put_key(bob, "hash-a", policy_entry("steal")))
    assert run(store.find_key("hash-a")) == replace(alice, revoked=True)
    assert run(store.put_key(bob, "hash-b", policy_entry("put-bob"))) is True
    assert [k.id for k in run(store.list_keys())] == ["k-alice", "k-bob"]
    assert run(store.policy_version()) == 3
    assert rows(store) == 3
    # Each key change is a policy change, and its row names the version it made (SPEC §2.5).
    changes = [e.body for e in run(store.events(LedgerFilter(kind="policy")))]
    assert [(b["reason"], b.get("policy_version")) for b in changes] == [
        ("put-bob", 3), ("revoke-alice", 2), ("put-alice", 1)]
    # Re-pointing a revoked key (a config's new secret for it) never brings it back: revocation is final.
    assert run(store.put_key(alice, "hash-a2", policy_entry("repoint-alice"))) is True
    assert run(store.find_key("hash-a2")) == replace(alice, revoked=True)


def test_policy_version_bumps_once_per_change_and_not_on_a_no_op(store: Any, run: Any) -> None:
    assert run(store.policy_version()) == 0
    changes = [("budget", "b1", {"cap_usd": "5"}), ("budget", "b2", {"cap_usd": "7"}), ("department", "eng", {})]
    assert run(store.change_objects(changes, [policy_entry("b1"), policy_entry("b2")])) == 1
    assert run(store.objects("budget")) == {"b1": {"cap_usd": "5"}, "b2": {"cap_usd": "7"}}
    assert run(store.objects("department")) == {"eng": {}}

    assert run(store.change_objects([("budget", "b1", None), ("budget", "b2", {"cap_usd": "8"})],
                                    [policy_entry("drop-b1")])) == 2
    assert run(store.objects("budget")) == {"b2": {"cap_usd": "8"}}

    assert run(store.change_objects([], [policy_entry("nothing")])) == 2
    assert run(store.change_objects([], [])) == 2
    assert run(store.policy_version()) == 2
    versions = [e.body["policy_version"] for e in reversed(run(store.events(LedgerFilter(kind="policy"))))]
    assert versions == [1, 1, 2, 2]
    assert rows(store) == 4


# Spend: eng may spend $0.003 a month, so bob's request after alice's settlement is denied.
ROLLUP = policy(budget("acme-month", "tenant:acme", "100"), budget("eng-month", "department:eng", "0.003"))


def _seed_spend(store: Any, run: Any) -> None:
    settled = [(who("alice"), "0.0012", None), (who("carol", "sales"), "0.0007", None),
               (who("dave", "sales", project="apollo"), "0.0004", OTHER_MODEL)]
    for person, cost_usd, model in settled:
        _, hold, body = run(reserve(store, ROLLUP, person, model=model or MODEL))
        run(store.settle(hold, parse_usd(cost_usd), settle_entry(body, parse_usd(cost_usd))))
    assert not run(reserve(store, ROLLUP, who("bob")))[0].allowed
    run(store.record({"event_id": "evt_cat", "ts": iso(NOW), "kind": "decision", "outcome": "deny",
                      "deny_code": "CATEGORY_DENIED", "department": "sales", "employee": "frank", "key": "k-frank",
                      "model": "m-std"}))
    assert run(reserve(store, ROLLUP, who("erin", "ops")))[0].allowed  # left live


def test_spend_rollups_group_settled_cost_requests_and_denials(store: Any, run: Any) -> None:
    _seed_spend(store, run)

    assert run(store.spend("department", DAY, DAY + 1)) == {"eng": (1_200_000, 1, 1), "sales": (1_100_000, 2, 1)}
    assert run(store.spend("model", DAY, DAY + 1)) == {"m-std": (1_900_000, 2, 2), "m-two": (400_000, 1, 0)}
    assert run(store.spend("employee", DAY, DAY + 1)) == {
        "alice": (1_200_000, 1, 0), "bob": (0, 0, 1), "carol": (700_000, 1, 0), "dave": (400_000, 1, 0),
        "frank": (0, 0, 1)}
    assert run(store.spend("key", DAY, DAY + 1))["k-dave"] == (400_000, 1, 0)
    assert run(store.spend("project", DAY, DAY + 1)) == {"": (1_900_000, 2, 2), "apollo": (400_000, 1, 0)}
    assert run(store.spend("department", DAY + 1, DAY + 31)) == {}
    with pytest.raises(ValueError):
        run(store.spend("tenant", DAY, DAY + 1))

    assert run(store.reserved_by("department")) == {"ops": ESTIMATE}
    assert run(store.reserved_by("employee")) == {"erin": ESTIMATE}
    assert run(store.live_holds()) == 1


def test_every_replica_reports_the_same_spend_and_holds(backend: Any, store: Any, run: Any) -> None:
    # Spend, reserved amounts and live holds written by one replica, read by another, and read
    # again by the first after the other has reported them: each request counted exactly once.
    other = backend.open()
    _seed_spend(store, run)
    everyone = {"alice": (1_200_000, 1, 0), "bob": (0, 0, 1), "carol": (700_000, 1, 0), "dave": (400_000, 1, 0),
                "frank": (0, 0, 1)}
    assert run(other.spend("employee", DAY, DAY + 1)) == everyone
    _, hold, body = run(reserve(other, TIGHT, who("gina")))
    assert run(other.settle(hold, 300_000, settle_entry(body, 300_000)))
    assert run(store.spend("employee", DAY, DAY + 1)) == {**everyone, "gina": (300_000, 1, 0)}
    assert run(other.spend("employee", DAY, DAY + 1)) == {**everyone, "gina": (300_000, 1, 0)}
    for replica in (store, other):
        assert run(replica.reserved_by("employee")) == {"erin": ESTIMATE}
        assert run(replica.live_holds()) == 1


def test_a_spend_report_groups_holds_without_an_attribution_under_the_empty_name(store: Any, run: Any) -> None:
    # The pipeline's decision rows name every attribution kind, null when the request had none.
    pol = policy(budget("acme-month", "tenant:acme", "1"))
    _, hold, body = run(reserve(store, pol, who("alice", project="apollo")))
    run(store.settle(hold, 1000, settle_entry(body, 1000)))
    person = who("bob")
    builder = decision_entry(person)
    decision, hold = run(store.reserve(plan_for(pol, person), decide,
                                       lambda d, h: {**builder(d, h), "project": None, "customer": None}, 60.0, NOW))
    assert hold is not None

    assert run(store.reserved_by("project")) == {"": decision.estimate_nanos}
    report = run(spend_report(store, pol, "project", "month", NOW))  # a 500 on GET /admin/v1/spend before
    assert {g["project"]: (g["settled_usd"], g["reserved_usd"]) for g in report["data"]} == {
        None: ("0.0000", format_usd(decision.estimate_nanos, 4)), "apollo": ("0.000001", "0.0000")}


def test_events_filter_newest_first_and_event_lookup(store: Any, run: Any) -> None:
    _seed_spend(store, run)

    denials = run(store.events(LedgerFilter(deny_code="BUDGET_EXCEEDED")))
    assert [e.body["employee"] for e in denials] == ["bob"]
    sales = run(store.events(LedgerFilter(scope_kind="department", scope_id="sales", kind="decision")))
    assert [e.body["employee"] for e in sales] == ["frank", "dave", "carol"]
    assert [e.seq for e in run(store.events(LedgerFilter(limit=2, before_seq=5)))] == [4, 3]
    assert [e.seq for e in run(store.events(LedgerFilter(since=iso(later(1)))))] == []
    assert len(run(store.events(LedgerFilter(scope_kind="tenant", scope_id="acme")))) == rows(store) == 9

    first = denials[0]
    assert run(store.event(first.body["event_id"])) == [first]
    dave = sales[1]
    assert [e.body["kind"] for e in run(store.event(dave.body["event_id"]))] == ["decision", "settle"]
    assert run(store.event("evt_missing")) == []


def test_chain_pages_through_the_ledger_from_any_row(store: Any, run: Any) -> None:
    for n in range(5):
        entry = policy_entry(f"p{n}")
        assert run(store.record(entry)) == entry["seq"] == n + 1  # the entry learns its seq

    assert [r.seq for r in store.chain(batch=2)] == [1, 2, 3, 4, 5]
    assert [r.seq for r in store.chain(batch=2, after_seq=3)] == [4, 5]
    assert list(store.chain(after_seq=5)) == []
    whole = list(store.chain())
    assert verify_chain(store.chain(after_seq=2), prev_hash=whole[1].hash, first_seq=3) == (3, None)
    assert [r.columns["event_id"] for r in whole if r.columns] == [f"evt_p{n}" for n in range(5)]


def test_a_request_period_cap_needs_no_counters(store: Any, run: Any) -> None:
    per_call = policy(budget("big-call", "tenant:acme", "0.003", period="request"))
    assert plan_for(per_call, who("alice")).keys == ()

    admitted, hold, body = run(reserve(store, per_call, who("alice"), max_tokens=1000))  # exactly $0.003
    denied, no_hold, _ = run(reserve(store, per_call, who("alice"), max_tokens=1001))

    assert admitted.allowed and hold is not None
    assert not denied.allowed and denied.deny_code == "BUDGET_EXCEEDED" and no_hold is None
    assert run(store.reserved_by("employee")) == {"alice": parse_usd("0.003")}
    assert run(store.settle(hold, parse_usd("0.0025"), settle_entry(body, parse_usd("0.0025")))) is True
    assert run(store.live_holds()) == 0
    assert run(store.spend("employee", DAY, DAY + 1)) == {"alice": (2_500_000, 1, 1)}
    assert rows(store) == 3


def test_a_replica_decides_on_what_another_replica_wrote_since(backend: Any, store: Any, run: Any) -> None:
    # Each replica keeps what it last read; another's writes in between must still count.
    other = backend.open()
    _, alice_hold, alice_body = run(reserve(store, TIGHT, who("alice")))
    _, bob_hold, bob_body = run(reserve(other, TIGHT, who("bob")))
    assert alice_hold is not None and bob_hold is not None

    # The department is now full (2 x $0.002 of $0.005), though this replica reserved only one.
    denied = run(reserve(store, TIGHT, who("carol")))[0]
    assert denied.deny_code == "BUDGET_EXCEEDED"
    assert denied.binding is not None and denied.binding.reserved_nanos == 2 * ESTIMATE

    # The other replica releases bob's hold: the room is back here at once.
    assert run(other.settle(bob_hold, 0, settle_entry(bob_body, 0))) is True
    _, carol_hold, carol_body = run(reserve(store, TIGHT, who("carol")))
    assert carol_hold is not None

    # The other replica releases carol; then this one settles alice ($0.001). Its own
    # settlement must not make it trust what it remembered from before the release.
    assert run(other.settle(carol_hold, 0, settle_entry(carol_body, 0))) is True
    assert run(store.settle(alice_hold, ESTIMATE // 2, settle_entry(alice_body, ESTIMATE // 2))) is True
    # $0.004 of $0.005 is free: two more requests fit.
    first = run(reserve(store, TIGHT, who("dave")))[0]
    assert first.binding is not None and first.binding.reserved_nanos == 0
    assert run(reserve(store, TIGHT, who("erin")))[0].allowed
    assert rows(store) == 9  # both replicas extended one chain


def test_a_reservation_that_fails_midway_leaves_no_trace(store: Any, run: Any) -> None:
    def unwritable(decision: Any, hold_id: str | None) -> dict[str, Any]:
        return {"event_id": "evt_bad", "ts": iso(NOW), "kind": "decision", "hold_id": hold_id,
                "not_json": {1, 2}}  # a set: the ledger row cannot be written

    with pytest.raises(TypeError, match="set"):
        run(store.reserve(plan_for(TIGHT, who("alice")), decide, unwritable, 60.0, NOW))

    keys = list(plan_for(TIGHT, who("alice")).keys)
    assert run(store.balances(keys)) == {k: (0, 0) for k in keys}
    assert run(store.live_holds()) == 0
    # Both requests the department fits are still admitted, and the third is not.
    assert run(reserve(store, TIGHT, who("alice")))[0].allowed
    assert run(reserve(store, TIGHT, who("bob")))[0].allowed
    assert not run(reserve(store, TIGHT, who("carol")))[0].allowed
    assert rows(store) == 3
