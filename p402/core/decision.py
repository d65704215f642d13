"""The decision: may this request spend, and how much may it reserve?

Two pure steps. `prepare` checks everything that needs no balance (signatures,
mandates, attribution, categories, price) in the contract's precedence order and
lists the budgets that apply. `decide` is then called *inside* the store's
transaction with the current balances, so the check and the reservation are one
atomic step. Denials are values; nothing here raises on user input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, NamedTuple

from p402.core.money import format_usd
from p402.core.periods import Window, boundary_iso, window_for
from p402.core.policy import TOKENS_PER_RATE, Budget, CounterKey, ModelSpec, Policy
from p402.core.scopes import Attribution

__all__ = [
    "DENY_CODES",
    "DENY_HTTP_STATUS",
    "Recovery",
    "Ask",
    "Charge",
    "Plan",
    "Balance",
    "Decision",
    "prepare",
    "decide",
    "affordable_tokens",
]

# The six deny codes, in precedence order (SPEC §3).
DENY_CODES = (
    "SIGNATURE_INVALID",
    "MANDATE_INACTIVE",
    "ATTRIBUTION_REQUIRED",
    "CATEGORY_DENIED",
    "PRICE_UNKNOWN",
    "BUDGET_EXCEEDED",
)
DENY_HTTP_STATUS = {code: 403 for code in DENY_CODES} | {"BUDGET_EXCEEDED": 402}
_ADJECTIVE = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly",
              "quarter": "quarterly", "year": "yearly", "total": "total", "request": "per-request"}


@dataclass(frozen=True, slots=True)
class Recovery:
    """What the caller can do about a denial."""

    action: str
    detail: str
    max_tokens: int | None = None
    retry_after_s: int | None = None
    owner: str | None = None
    allowed_models: tuple[str, ...] | None = None
    header: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"action": self.action}
        for name in ("max_tokens", "allowed_models", "header"):
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if isinstance(value, tuple) else value
        out["detail"] = self.detail
        if self.owner:
            out["owner"] = self.owner
        if self.retry_after_s is not None:
            out["retry_after_s"] = self.retry_after_s
        return out


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request asks for, as the decision sees it."""

    who: Attribution
    model: ModelSpec
    input_tokens: int
    max_tokens: int | None  # as the client sent it
    wants_output: bool  # False for embeddings
    now: datetime
    presented_mandate: str | None = None
    completions: int = 1  # OpenAI `n`: every choice may use up to max_tokens of output


class Charge(NamedTuple):
    """One applicable budget; `key` is None for a `request`-period budget. (Named tuples, this
    and `Balance`: several are built on every request, and a tuple is built natively.)"""

    budget: Budget
    key: CounterKey | None
    window: Window | None
    cap_nanos: int


@dataclass(frozen=True, slots=True)
class Plan:
    """The budgets that apply to an admissible request."""

    ask: Ask
    charges: tuple[Charge, ...]

    @property
    def keys(self) -> tuple[CounterKey, ...]:
        return tuple(c.key for c in self.charges if c.key is not None)


class Balance(NamedTuple):
    """A budget's standing when the decision was made."""

    charge: Charge
    settled_nanos: int
    reserved_nanos: int

    @property
    def headroom_nanos(self) -> int:
        return self.charge.cap_nanos - self.settled_nanos - self.reserved_nanos

    @property
    def scope_label(self) -> str:
        b = self.charge.budget
        if b.per and self.charge.key is not None:
            return f"{b.per}:{self.charge.key.member}"
        return str(b.scope)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome. On allow, `reserve_on` lists the counters to reserve `estimate_nanos` on."""

    allowed: bool
    reason: str
    deny_code: str | None = None
    estimate_nanos: int = 0
    max_tokens: int | None = None
    max_tokens_set: bool = False
    binding: Balance | None = None
    recovery: Recovery | None = None
    reserve_on: tuple[CounterKey, ...] = ()
    shadow_denials: tuple[str, ...] = field(default=())
    scope: str | None = None  # the scope the denial is about


    @property
    def remaining_nanos(self) -> int | None:
        """The binding budget's headroom after this request's reservation. A per-request cap has
        no counter, but this request uses it the same: what is left of it after the estimate, so
        the binding budget is still the smallest headroom after the reservation."""
        if self.binding is None:
            return None
        after = self.binding.headroom_nanos
        if self.allowed:
            after -= self.estimate_nanos
        return after


def _deny(code: str, reason: str, recovery: Recovery, scope: object = None) -> Decision:
    return Decision(allowed=False, deny_code=code, reason=reason, recovery=recovery,
                    scope=str(scope) if scope is not None else None)


def _header_for(kind: str) -> str:
    return f"X-P402-{kind.capitalize()}"


@dataclass(frozen=True, slots=True)
class _Standing:
    """What `prepare` finds for one attribution and model under one policy that does not move
    with time: the applicable budgets, the first signature failure, the budgets whose mandates
    must be current, the first denial after those (attribution, category, price), and each
    budget's counter member. The parts that move with time (mandate validity, overrides,
    windows) are checked on every request."""

    signature_denial: Decision | None
    mandated: tuple[Budget, ...]
    denial: Decision | None
    members: tuple[tuple[Budget, str], ...]


# Standings kept per policy snapshot (each version is a new Policy, so a change never sees an
# old one); cleared when full, like the key cache.
MAX_STANDINGS = 65_536


def prepare(ask: Ask, policy: Policy) -> Decision | Plan:
    """Every check that needs no balance, in precedence order; else the plan."""
    who, model, now = ask.who, ask.model, ask.now
    if ask.presented_mandate is not None:
        presented = [m for m in policy.mandates.values() if m.digest == ask.presented_mandate]
        if presented and not presented[0].signature_ok:
            return _deny("SIGNATURE_INVALID", f"mandate {ask.presented_mandate} does not verify against its signer",
                         Recovery("resign_mandate", "the budget owner must sign the mandate again"))
    memo = policy.memo
    standing: _Standing | None = memo.get((who, model.name))
    if standing is None:
        if len(memo) >= MAX_STANDINGS:
            memo.clear()
        standing = memo[(who, model.name)] = _standing(who, model, policy)
    if standing.signature_denial is not None:
        return standing.signature_denial
    for b in standing.mandated:
        mandate = policy.mandates.get(b.id)
        problem = "missing" if mandate is None else mandate.problem(now)
        if problem is not None:
            return _deny("MANDATE_INACTIVE", f"budget {b.id} on {b.scope} requires a mandate and it is {problem}",
                         Recovery("renew_mandate", f"the owner of budget {b.id} must sign a current mandate",
                                  owner=b.owner or None), b.scope)
    if standing.denial is not None:
        return standing.denial

    overridden = policy.overridden
    windows: dict[str, Window] = {}
    charges = []
    for b, member in standing.members:
        cap = policy.cap_of(b, now) if b.id in overridden else b.cap_nanos
        if b.period == "request":
            charges.append(Charge(b, None, None, cap))
        else:
            window = windows.get(b.period)
            if window is None:
                window = windows[b.period] = window_for(b.period, now, policy.timezone)
            charges.append(Charge(b, CounterKey(b.id, member, window.key), window, cap))
    return Plan(ask, tuple(charges))


def _standing(who: Attribution, model: ModelSpec, policy: Policy) -> _Standing:
    applicable = policy.budgets_for(who, model.categories)
    members = tuple((b, b.member(who)) for b in applicable)
    for b in applicable:
        mandate = policy.mandates.get(b.id)
        if b.requires_mandate and mandate is not None and not mandate.signature_ok:
            denial = _deny("SIGNATURE_INVALID", f"the mandate of budget {b.id} does not verify against its signer",
                           Recovery("resign_mandate", "the budget owner must sign the mandate again",
                                    owner=b.owner or None), b.scope)
            return _Standing(denial, (), None, members)
    mandated = tuple(b for b in applicable if b.requires_mandate)
    return _Standing(None, mandated, _static_denial(who, model, policy), members)


def _static_denial(who: Attribution, model: ModelSpec, policy: Policy) -> Decision | None:
    """The first denial, after the mandate checks, that depends on nothing but who, the model and the policy."""
    rules = [r for r in policy.rules if who.covers(r.scope)]
    for r in rules:
        for kind in r.require:
            if not who.get(kind):
                header = _header_for(kind)
                return _deny("ATTRIBUTION_REQUIRED", f"{r.scope} requires a {kind} attribution; send {header}",
                             Recovery("add_attribution", f"send the {header} header naming the {kind}", header=header),
                             r.scope)
    for kind, ids in policy.known.items():
        value = who.get(kind)
        if value and value not in ids:
            header = _header_for(kind)
            return _deny("ATTRIBUTION_REQUIRED", f"unknown {kind} {value!r}",
                         Recovery("add_attribution", f"send {header} with a declared {kind}", header=header))

    denied = frozenset().union(*(r.deny_categories for r in rules)) if rules else frozenset()
    hit = denied & model.categories
    if hit:
        allowed = tuple(sorted(m.name for m in policy.usable_models(who)))
        scope = next(str(r.scope) for r in rules if r.deny_categories & model.categories)
        return _deny("CATEGORY_DENIED", f"{scope} may not use {', '.join(sorted(hit))} models such as {model.name}",
                     Recovery("use_allowed_model", "use one of the allowed models", allowed_models=allowed), scope)

    if model.price is None:
        return _deny("PRICE_UNKNOWN", f"model {model.name} has no price, so its cost cannot be bounded",
                     Recovery("add_price", f"add price: {{input_per_mtok, output_per_mtok}} to model {model.name} in the config"))
    return None


def affordable_tokens(headroom_nanos: int, input_nanos: int, output_rate: int) -> int:
    """The largest output token count whose cost, with the input, fits the headroom."""
    spare = headroom_nanos - input_nanos
    if spare < 0:
        return -1
    if output_rate == 0:
        return 1 << 62
    # ceil(m * rate / 1e6) <= spare  <=>  m * rate <= spare * 1e6
    return spare * TOKENS_PER_RATE // output_rate


def decide(plan: Plan, balances: Mapping[CounterKey, tuple[int, int]]) -> Decision:
    """Admit or deny against the balances read inside the reservation transaction.

    `balances` maps each counter key of the plan to (settled, reserved); a key
    that is absent is a window nobody has spent in yet.
    """
    ask = plan.ask
    # The tier of the prompt's upper bound: never below the actual prompt's tier.
    price = ask.model.price_for(ask.input_tokens)
    if price is None:  # prepare() denies these; guard against misuse.
        raise ValueError("decide() needs a priced model")
    input_nanos = price.input_cost(ask.input_tokens)
    enforced: list[Balance] = []
    shadow: list[Balance] = []
    for c in plan.charges:
        settled, reserved = balances.get(c.key, (0, 0)) if c.key is not None else (0, 0)
        (shadow if c.budget.mode == "shadow" else enforced).append(Balance(c, settled, reserved))
    binding = min(enforced, key=lambda b: b.headroom_nanos, default=None)

    max_tokens, gateway_set = ask.max_tokens, False
    if ask.wants_output and max_tokens is None:
        fit = ask.model.max_output_tokens
        if binding is not None:
            fit = min(fit, affordable_tokens(binding.headroom_nanos, input_nanos, price.output) // ask.completions)
        max_tokens, gateway_set = max(fit, 0), True
    estimate = input_nanos + (price.output_cost((max_tokens or 0) * ask.completions) if ask.wants_output else 0)

    shadow_denials = tuple(b.charge.budget.id for b in shadow if estimate > b.headroom_nanos)
    fits = binding is None or estimate <= binding.headroom_nanos
    if fits and (not ask.wants_output or (max_tokens or 0) >= 1):
        return Decision(allowed=True, reason="within budget", estimate_nanos=estimate, max_tokens=max_tokens,
                        max_tokens_set=gateway_set, binding=binding,
                        reserve_on=tuple(c.key for c in plan.charges if c.key is not None),
                        shadow_denials=shadow_denials)
    assert binding is not None  # only a budget can fail to fit
    return _budget_denial(ask, binding, estimate, input_nanos, gateway_set)


def _budget_denial(ask: Ask, binding: Balance, estimate: int, input_nanos: int, gateway_set: bool) -> Decision:
    budget, window = binding.charge.budget, binding.charge.window
    price = ask.model.price_for(ask.input_tokens)
    assert price is not None
    headroom = max(binding.headroom_nanos, 0)
    resets = window.end if window is not None else None
    retry = window.seconds_left(ask.now) if window is not None else None
    reason = (f"{binding.scope_label} {_ADJECTIVE[budget.period]} budget would be exceeded: "
              f"estimate ${format_usd(estimate, 4)}, remaining ${format_usd(headroom, 4)} "
              f"of ${format_usd(binding.charge.cap_nanos)}")
    if resets is not None:
        reason += f"; resets {_iso(resets)}"
    owner = budget.owner or None
    if budget.requires_mandate and budget.period == "total" and binding.headroom_nanos <= 0:
        # All a one-off mandate authorised is spent: the mandate is exhausted (SPEC §3), and only
        # its owner can authorise more.
        return Decision(allowed=False, deny_code="MANDATE_INACTIVE", estimate_nanos=estimate, binding=binding,
                        reason=f"budget {budget.id} on {budget.scope} requires a mandate and it is exhausted: "
                               f"${format_usd(binding.charge.cap_nanos)} authorised, all of it spent or reserved",
                        recovery=Recovery("renew_mandate", f"the owner of budget {budget.id} must sign a new "
                                                           f"mandate (or an override) to spend more", owner=owner),
                        scope=str(budget.scope))
    fit = (min(affordable_tokens(binding.headroom_nanos, input_nanos, price.output) // ask.completions,
               ask.model.max_output_tokens) if ask.wants_output else -1)
    if not gateway_set and fit >= 1:
        recovery = Recovery("reduce_max_tokens", f"max_tokens {fit} or fewer fits the remaining budget",
                            max_tokens=fit, owner=owner, retry_after_s=retry)
    elif retry is not None:
        recovery = Recovery("wait_for_reset", f"budget {budget.id} resets at {_iso(resets)}",
                            owner=owner, retry_after_s=retry)
    else:
        recovery = Recovery("request_override", f"ask the owner of budget {budget.id} for a signed override",
                            owner=owner)
    return Decision(allowed=False, deny_code="BUDGET_EXCEEDED", reason=reason, estimate_nanos=estimate,
                    binding=binding, recovery=recovery, scope=binding.scope_label)


def _iso(moment: datetime | None) -> str:
    return boundary_iso(moment) if moment is not None else ""
