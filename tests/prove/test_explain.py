"""Plain-language explanations of ledger rows."""

from __future__ import annotations

from datetime import timedelta

from p402.core.decision import Ask
from p402.core.policy import ModelSpec
from p402.core.scopes import Attribution
from p402.pipeline.ports import Usage
from p402.pipeline.records import settlement_entry
from p402.prove.explain import explain

from .ledgers import T0, decision, settlement, who

# As `binding_view` writes it into decision rows (and the deny body shows it).
BINDING = {"id": "eng-month", "scope": "department:eng", "cap_usd": "5000.00", "settled_usd": "4999.9810",
           "reserved_usd": "0.0150", "remaining_usd": "0.0040"}


def test_a_budget_denial_says_who_asked_which_budget_bound_why_and_what_to_do() -> None:
    body = decision(T0, who(project="apollo"), outcome="deny", deny_code="BUDGET_EXCEEDED", estimate_usd="0.0123",
                    max_tokens=800, reason="department:eng monthly budget would be exceeded: estimate $0.0123, "
                                           "remaining $0.0040 of $5000.00",
                    recovery={"action": "reduce_max_tokens", "max_tokens": 210,
                              "detail": "max_tokens 210 or fewer fits the remaining budget"}, binding=BINDING)
    text = explain(body)
    assert "Employee alice (department eng, project apollo, key k-alice, tenant acme) asked for gpt-4o-mini" in text
    assert "max_tokens 800" in text and "estimated cost $0.0123" in text
    assert "Denied with BUDGET_EXCEEDED: department:eng monthly budget would be exceeded" in text
    assert ("The binding budget was eng-month on department:eng: cap $5000.00, settled $4999.9810, "
            "reserved $0.0150, remaining $0.0040.") in text
    assert "What to do next: retry with max_tokens 210 or fewer." in text


def test_waiting_for_a_reset_says_how_long() -> None:
    body = decision(T0, outcome="deny", deny_code="BUDGET_EXCEEDED", reason="budget exceeded",
                    recovery={"action": "wait_for_reset", "retry_after_s": 3 * 86400 + 4 * 3600 + 59,
                              "detail": "budget eng-month resets at 2026-04-01T00:00:00Z"})
    assert ("What to do next: wait for the budget to reset, in 3 days 4 hours "
            "(budget eng-month resets at 2026-04-01T00:00:00Z).") in explain(body)


def test_policy_denials_name_the_fix() -> None:
    category = decision(T0, outcome="deny", deny_code="CATEGORY_DENIED", reason="department:sales may not use premium",
                        recovery={"action": "use_allowed_model", "allowed_models": ["gpt-4o-mini", "haiku"],
                                  "detail": "use one of the allowed models"})
    assert "use an allowed model: gpt-4o-mini, haiku" in explain(category)
    attribution = decision(T0, outcome="deny", deny_code="ATTRIBUTION_REQUIRED", reason="requires a project",
                           recovery={"action": "add_attribution", "header": "X-P402-Project", "detail": ""})
    assert "What to do next: send the X-P402-Project header." in explain(attribution)
    mandate = decision(T0, outcome="deny", deny_code="MANDATE_INACTIVE", reason="mandate expired",
                       recovery={"action": "renew_mandate", "owner": "0xAbC", "detail": ""})
    assert "the budget owner (0xAbC) must sign a current mandate" in explain(mandate)


def test_an_admit_where_the_gateway_chose_max_tokens_and_a_shadow_budget_objected() -> None:
    body = decision(T0, who(employee="", key="k-bot", workflow="support-bot"), max_tokens=345,
                    max_tokens_set=True, binding=BINDING, flags=["shadow:bot-hourly"])
    text = explain(body)
    assert text.startswith(f"Decision {body['event_id']} at 2026-03-02T09:00:00.000Z, under policy version 1.")
    assert "Workflow support-bot (department eng, key k-bot, tenant acme) asked for gpt-4o-mini" in text
    assert "max_tokens 345 (set by the gateway: the most the budget could afford)" in text
    assert "Allowed (within budget)" in text and "Shadow budget(s) bot-hourly would have denied it" in text


def test_settlements_say_what_the_call_cost() -> None:
    made = decision(T0, estimate_usd="0.0002")
    settled = explain(settlement(T0 + timedelta(seconds=3), made, "0.00031", flags=["overrun"]))
    assert f"The call of decision {made['event_id']} settled at its actual cost $0.00031" in settled
    assert "(200 input, 150 output tokens)" in settled and "overrun" in settled
    orphan = explain(settlement(T0, made, "0.0002", kind="expire", flags=["orphaned"]))
    assert "never reported back" in orphan and "flagged orphaned" in orphan
    released = explain(settlement(T0, made, "0", kind="release", output_tokens=0))
    assert "was released: the call was billed $0" in released


def test_checkpoints_and_policy_changes_are_explained() -> None:
    checkpoint = {"kind": "checkpoint", "event_id": "evt_1", "ts": "2026-03-02T09:00:00.000Z", "covered_seq": 41,
                  "root": "ab" * 32, "key_id": "ed25519:00"}
    assert "Seals ledger rows 1..41" in explain(checkpoint)
    policy = {"kind": "policy", "event_id": "evt_2", "ts": "2026-03-02T09:00:00.000Z", "policy_version": 7,
              "reason": "budget eng-month cap changed from $5000 to $6000"}
    assert "Policy change: budget eng-month cap changed from $5000 to $6000." in explain(policy)


def test_a_late_settlement_says_what_the_call_really_cost_beside_its_orphaned_settlement() -> None:
    # The row as the gateway writes it when a hold expired before its call reported back.
    ask = Ask(Attribution("acme", "k-alice", "eng", "alice"), ModelSpec("gpt-4o-mini", "openai", "gpt-4o-mini"),
              200, 300, True, T0)
    row = {**settlement_entry("evt_late", T0, ask, "hold_1", 2_000_000, 1_500_000,
                              Usage(input_tokens=200, output_tokens=120, reported=True), "ok", 3),
           "kind": "late_settle"}
    text = explain(row)
    assert text.startswith("Late settle evt_late at 2026-03-02T09:00:00.000Z, under policy version 3.")
    assert ("The call of decision evt_late reported back after its lease had run out, when its reservation had "
            "already been settled in full as orphaned; it actually cost $0.0015 (200 input, 120 output tokens).") in text
    assert "No further detail recorded" not in text
