"""The pure decision: every deny code, their precedence, recovery advice, and the estimate."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from p402.core.decision import Ask, Decision, Plan, affordable_tokens, decide, prepare
from p402.core.policy import Budget, CounterKey, MandateState, ModelSpec, Override, Policy, Price, Rule
from p402.core.scopes import Attribution, Scope

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
MINI = ModelSpec("mini", "simulated", "mini", frozenset({"chat"}), Price(150_000_000, 600_000_000))
PREMIUM = ModelSpec("big", "simulated", "big", frozenset({"chat", "premium"}), Price(2_500_000_000, 10_000_000_000))
UNPRICED = ModelSpec("local", "simulated", "local", frozenset({"chat", "premium"}), None)
ALICE = Attribution(tenant="acme", key="k1", department="eng", employee="alice")


def policy(*budgets: Budget, rules: tuple[Rule, ...] = (), mandates: dict[str, MandateState] | None = None,
           overrides: tuple[Override, ...] = (), known: dict[str, frozenset[str]] | None = None) -> Policy:
    return Policy(version=7, tenant="acme", models={m.name: m for m in (MINI, PREMIUM, UNPRICED)}, budgets=budgets,
                  rules=rules, mandates=mandates or {}, overrides=overrides, known=known or {})


def budget(ident: str, scope: str, cap_nanos: int, period: str = "month", **kw: object) -> Budget:
    kind, _, sid = scope.partition(":")
    return Budget(ident, Scope(kind, sid), cap_nanos, period, **kw)  # type: ignore[arg-type]


def ask(model: ModelSpec = MINI, who: Attribution = ALICE, max_tokens: int | None = 100, input_tokens: int = 10,
        mandate: str | None = None) -> Ask:
    return Ask(who, model, input_tokens, max_tokens, True, NOW, mandate)


def run(a: Ask, p: Policy, balances: dict | None = None) -> Decision:
    prepared = prepare(a, p)
    return prepared if isinstance(prepared, Decision) else decide(prepared, balances or {})


def test_precedence_follows_the_contract() -> None:
    eng = Scope("department", "eng")
    mandated = budget("m", "department:eng", 10**12, requires_mandate=True)
    bad_sig = MandateState("0xdead", "m", NOW - timedelta(days=1), NOW + timedelta(days=1), signature_ok=False)
    p = policy(mandated, rules=(Rule(eng, frozenset({"premium"}), ("project",)),), mandates={"m": bad_sig})
    # All six problems at once: the signature is reported first, then each in turn as the others are fixed.
    assert run(ask(UNPRICED), p).deny_code == "SIGNATURE_INVALID"
    ok_sig = MandateState("0xdead", "m", NOW + timedelta(days=1), NOW + timedelta(days=2))
    p = policy(mandated, rules=(Rule(eng, frozenset({"premium"}), ("project",)),), mandates={"m": ok_sig})
    assert run(ask(UNPRICED), p).deny_code == "MANDATE_INACTIVE"
    p = policy(budget("m", "department:eng", 1), rules=(Rule(eng, frozenset({"premium"}), ("project",)),))
    assert run(ask(UNPRICED), p).deny_code == "ATTRIBUTION_REQUIRED"
    p = policy(budget("m", "department:eng", 1), rules=(Rule(eng, frozenset({"premium"})),))
    d = run(ask(UNPRICED), p)
    assert d.deny_code == "CATEGORY_DENIED" and d.recovery is not None and d.recovery.allowed_models == ("mini",)
    p = policy(budget("m", "department:eng", 1))
    assert run(ask(UNPRICED), p).deny_code == "PRICE_UNKNOWN"
    assert run(ask(PREMIUM), p).deny_code == "BUDGET_EXCEEDED"


def test_a_one_off_mandate_spent_to_the_last_nano_is_exhausted_not_just_exceeded() -> None:
    valid = MandateState("0x1", "m", NOW - timedelta(days=1), NOW + timedelta(days=1))
    one_off = budget("m", "department:eng", 10**6, period="total", requires_mandate=True, owner="0x" + "ab" * 20)
    key = CounterKey("m", "", 0)
    for settled, reserved in [(10**6, 0), (4 * 10**5, 6 * 10**5), (10**6 + 5, 0)]:  # spent, reserved, overrun
        d = run(ask(), policy(one_off, mandates={"m": valid}), {key: (settled, reserved)})
        assert d.deny_code == "MANDATE_INACTIVE" and "exhausted" in d.reason, (settled, reserved)
        assert d.recovery is not None and d.recovery.action == "renew_mandate" and d.recovery.owner == "0x" + "ab" * 20
    # Headroom left that this request does not fit: exceeded, with the max_tokens that would fit.
    d = run(ask(), policy(one_off, mandates={"m": valid}), {key: (10**6 - 20_000, 0)})
    assert d.deny_code == "BUDGET_EXCEEDED" and d.recovery is not None and d.recovery.action == "reduce_max_tokens"
    # A monthly mandate spent out this month is not exhausted: it resets.
    monthly = budget("m", "department:eng", 10**6, requires_mandate=True)
    d = run(ask(), policy(monthly, mandates={"m": valid}), {CounterKey("m", "", monthly_window()): (10**6, 0)})
    assert d.deny_code == "BUDGET_EXCEEDED" and d.recovery is not None and d.recovery.action == "wait_for_reset"
    # A budget that needs no mandate is never "exhausted".
    d = run(ask(), policy(budget("t", "department:eng", 10**6, period="total")), {CounterKey("t", "", 0): (10**6, 0)})
    assert d.deny_code == "BUDGET_EXCEEDED"


def monthly_window() -> int:
    from p402.core.periods import window_for
    return window_for("month", NOW).key


def test_mandate_problems_are_named() -> None:
    b = budget("m", "department:eng", 10**12, requires_mandate=True)
    assert "missing" in run(ask(), policy(b)).reason
    for state, word in [
        (MandateState("0x1", "m", NOW - timedelta(days=2), NOW - timedelta(days=1)), "expired"),
        (MandateState("0x1", "m", NOW + timedelta(days=1), NOW + timedelta(days=2)), "not yet valid"),
        (MandateState("0x1", "m", NOW - timedelta(days=1), NOW + timedelta(days=1), revoked=True), "revoked"),
        (MandateState("0x1", "m", NOW - timedelta(days=1), NOW + timedelta(days=1), superseded=True), "superseded"),
        (MandateState("0x1", "m", NOW - timedelta(days=1), NOW + timedelta(days=1), exhausted=True), "exhausted"),
    ]:
        d = run(ask(), policy(b, mandates={"m": state}))
        assert d.deny_code == "MANDATE_INACTIVE" and word in d.reason
    valid = MandateState("0x1", "m", NOW - timedelta(days=1), NOW + timedelta(days=1))
    assert run(ask(), policy(b, mandates={"m": valid})).allowed


def test_a_category_denial_advises_only_models_that_would_be_admitted() -> None:
    local_chat = ModelSpec("local-chat", "simulated", "local-chat", frozenset({"chat"}), None)  # unpriced
    p = Policy(version=7, tenant="acme", models={m.name: m for m in (MINI, PREMIUM, local_chat)},
               rules=(Rule(Scope("department", "eng"), frozenset({"premium"})),))
    d = run(ask(PREMIUM), p)
    assert d.deny_code == "CATEGORY_DENIED" and d.recovery is not None
    assert d.recovery.allowed_models == ("mini",)  # not local-chat: it would be denied PRICE_UNKNOWN
    assert run(ask(local_chat), p).deny_code == "PRICE_UNKNOWN"


def test_smallest_headroom_binds_and_the_advice_fits_exactly() -> None:
    tenant = budget("t", "tenant:acme", 10**12)
    eng = budget("e", "department:eng", 50_000)  # $0.00005
    d = run(ask(max_tokens=1000), policy(tenant, eng))
    assert d.deny_code == "BUDGET_EXCEEDED" and d.binding is not None and d.binding.charge.budget.id == "e"
    assert d.recovery is not None and d.recovery.action == "reduce_max_tokens"
    fit = d.recovery.max_tokens
    assert fit == (50_000 - 1500) * 1_000_000 // 600_000_000
    assert run(ask(max_tokens=fit), policy(tenant, eng)).allowed
    assert not run(ask(max_tokens=fit + 1), policy(tenant, eng)).allowed


def test_the_advice_never_exceeds_the_models_output_limit() -> None:
    # $0.10 of headroom affords ~166,000 output tokens, more than the model writes in one answer.
    roomy = budget("e", "department:eng", 100_000_000)
    d = run(ask(max_tokens=200_000), policy(roomy))
    assert MINI.max_output_tokens < 166_000
    assert d.deny_code == "BUDGET_EXCEEDED" and d.recovery is not None
    assert d.recovery.action == "reduce_max_tokens" and d.recovery.max_tokens == MINI.max_output_tokens
    assert run(ask(max_tokens=d.recovery.max_tokens), policy(roomy)).allowed


def test_several_choices_reserve_output_for_each_and_the_advice_accounts_for_them() -> None:
    eng = budget("e", "department:eng", 50_000)
    three = Ask(ALICE, MINI, 10, 20, True, NOW, completions=3)  # OpenAI n=3: three answers of up to 20 tokens
    d = run(three, policy(eng))
    assert d.allowed and d.estimate_nanos == 1500 + 60 * 600
    big = Ask(ALICE, MINI, 10, 1000, True, NOW, completions=3)
    d = run(big, policy(eng))
    assert d.recovery is not None and d.recovery.max_tokens == (50_000 - 1500) * 1_000_000 // 600_000_000 // 3
    fit = d.recovery.max_tokens
    assert run(Ask(ALICE, MINI, 10, fit, True, NOW, completions=3), policy(eng)).allowed
    assert not run(Ask(ALICE, MINI, 10, fit + 1, True, NOW, completions=3), policy(eng)).allowed
    unset = run(Ask(ALICE, MINI, 10, None, True, NOW, completions=3), policy(eng))
    assert unset.allowed and unset.max_tokens == 80 // 3 and unset.estimate_nanos <= 50_000


def test_gateway_sets_max_tokens_to_what_is_affordable_within_the_model_limit() -> None:
    d = run(ask(max_tokens=None), policy(budget("e", "department:eng", 50_000)))
    assert d.allowed and d.max_tokens_set and d.max_tokens == 80 and d.estimate_nanos <= 50_000
    d = run(ask(max_tokens=None), policy(budget("e", "department:eng", 10**12)))
    assert d.max_tokens == MINI.max_output_tokens
    d = run(ask(max_tokens=None), policy(budget("e", "department:eng", 1000)))  # not even the input fits
    assert d.deny_code == "BUDGET_EXCEEDED" and d.recovery is not None and d.recovery.action == "wait_for_reset"


def test_per_member_budgets_count_each_member_and_unnamed_members_share_a_bucket() -> None:
    b = budget("per", "department:eng", 10**9, per="project")
    plan = prepare(ask(who=Attribution("acme", "k1", "eng", "alice", project="p1")), policy(b))
    assert isinstance(plan, Plan) and plan.keys[0].member == "p1"
    plan = prepare(ask(), policy(b))
    assert isinstance(plan, Plan) and plan.keys[0].member == "-"


def test_category_budgets_only_count_their_categories_and_other_scopes_do_not_apply() -> None:
    premium = budget("prem", "department:eng", 1, categories=frozenset({"premium"}))
    sales = budget("sales", "department:sales", 1)
    assert run(ask(MINI), policy(premium, sales)).allowed
    assert run(ask(PREMIUM), policy(premium, sales)).deny_code == "BUDGET_EXCEEDED"


def test_request_period_caps_each_request_alone() -> None:
    b = budget("big-call", "tenant:acme", 100_000, period="request")
    d = run(ask(max_tokens=100), policy(b), {})
    assert d.allowed and d.reserve_on == ()  # no counter: nothing accumulates
    d = run(ask(max_tokens=1000), policy(b))
    assert not d.allowed and d.recovery is not None and d.recovery.action == "reduce_max_tokens"
    d = run(ask(max_tokens=None, input_tokens=10**6), policy(b))
    assert d.recovery is not None and d.recovery.action == "request_override"  # no reset to wait for


def test_an_active_override_raises_the_cap_only_inside_its_window() -> None:
    b = budget("e", "department:eng", 50_000)
    o = Override("e", 10**9, NOW - timedelta(hours=1), NOW + timedelta(hours=1), "0xowner")
    assert run(ask(max_tokens=1000), policy(b, overrides=(o,))).allowed
    late = Override("e", 10**9, NOW + timedelta(hours=1), NOW + timedelta(hours=2))
    assert not run(ask(max_tokens=1000), policy(b, overrides=(late,))).allowed


def test_unknown_declared_attribution_is_refused() -> None:
    p = policy(known={"project": frozenset({"search"})})
    who = Attribution("acme", "k1", "eng", "alice", project="nope")
    d = run(ask(who=who), p)
    assert d.deny_code == "ATTRIBUTION_REQUIRED" and d.recovery is not None and d.recovery.header == "X-P402-Project"


@given(st.integers(0, 10**12), st.integers(0, 10**9), st.integers(1, 10**11))
def test_affordable_tokens_is_the_largest_that_fits(headroom: int, input_nanos: int, rate: int) -> None:
    m = affordable_tokens(headroom, input_nanos, rate)
    price = Price(0, rate)
    if input_nanos > headroom:
        assert m == -1
    else:
        assert input_nanos + price.output_cost(m) <= headroom
        assert input_nanos + price.output_cost(m + 1) > headroom


@given(settled=st.integers(0, 10**9), reserved=st.integers(0, 10**9), cap=st.integers(0, 2 * 10**9),
       max_tokens=st.one_of(st.none(), st.integers(1, 10**5)), input_tokens=st.integers(0, 10**5))
def test_an_admitted_estimate_always_fits_every_budget(settled: int, reserved: int, cap: int, max_tokens: int | None,
                                                       input_tokens: int) -> None:
    b = budget("e", "department:eng", cap)
    prepared = prepare(ask(max_tokens=max_tokens, input_tokens=input_tokens), policy(b))
    assert isinstance(prepared, Plan)
    d = decide(prepared, {prepared.keys[0]: (settled, reserved)})
    if d.allowed:
        assert settled + reserved + d.estimate_nanos <= cap
        assert d.estimate_nanos >= MINI.price.input_cost(input_tokens) + MINI.price.output_cost(d.max_tokens or 0)  # type: ignore[union-attr]
    else:
        assert d.deny_code == "BUDGET_EXCEEDED"


def test_the_estimate_prices_the_prompt_at_the_cache_write_rate_where_it_is_higher() -> None:
    # A provider may bill every prompt token as a cache write (Anthropic's cache_control): 1.25x input here.
    cached = ModelSpec("cached", "simulated", "cached", frozenset({"chat"}),
                       Price(3_000_000_000, 15_000_000_000, cache_read=300_000_000, cache_write=3_750_000_000))
    d = run(ask(cached, input_tokens=1_000_000, max_tokens=1), policy())
    worst = cached.price.cost(0, 1, cache_write_tokens=1_000_000)  # type: ignore[union-attr]
    assert d.allowed and d.estimate_nanos == worst == 3_750_000_000 + 15_000
    plain = ModelSpec("plain", "simulated", "plain", frozenset({"chat"}), Price(3_000_000_000, 15_000_000_000))
    assert run(ask(plain, input_tokens=1_000_000, max_tokens=1), policy()).estimate_nanos == 3_000_000_000 + 15_000
