"""The policy a decision is made under: models and prices, budgets, rules, mandates.

A `Policy` is an immutable snapshot with a version number; every decision
records the version it was made under. Building one is the config loader's and
the store's job; reading it is pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, tzinfo, timezone
from typing import Any, Mapping, NamedTuple

from p402.core.money import ceil_div
from p402.core.scopes import SCOPE_KINDS, Attribution, Scope

__all__ = [
    "MAX_OUTPUT_TOKENS",
    "IMAGE_TOKENS",
    "IMAGE_TOKENS_BY_UPSTREAM",
    "Price",
    "ModelSpec",
    "Budget",
    "Rule",
    "MandateState",
    "Override",
    "Policy",
    "CounterKey",
    "TOKENS_PER_RATE",
]

# Prices are kept as nano-USD per million tokens: exact for any price quoted
# to 9 decimals per Mtok, and cost = ceil(tokens * rate / 1e6).
TOKENS_PER_RATE = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """Per-model rates in nano-USD per million tokens."""

    input: int
    output: int
    cache_read: int | None = None
    cache_write: int | None = None

    def input_cost(self, tokens: int) -> int:
        """The most `tokens` of prompt can cost: a provider may bill any of them as cache writes
        (Anthropic's `cache_control`), which cost more than plain input where they are priced."""
        rate = self.input if self.cache_write is None else max(self.input, self.cache_write)
        return ceil_div(tokens * rate, TOKENS_PER_RATE)

    def output_cost(self, tokens: int) -> int:
        return ceil_div(tokens * self.output, TOKENS_PER_RATE)

    def cost(self, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
             cache_write_tokens: int = 0) -> int:
        """Actual cost of a call. `input_tokens` excludes cached tokens."""
        read_rate = self.input if self.cache_read is None else self.cache_read
        write_rate = self.input if self.cache_write is None else self.cache_write
        total = (input_tokens * self.input + output_tokens * self.output
                 + cache_read_tokens * read_rate + cache_write_tokens * write_rate)
        return ceil_div(total, TOKENS_PER_RATE)

# The most one image costs on the providers routed, in tokens: OpenAI's high detail at the largest
# tiling (85 + 170 x 16; Anthropic caps images at ~1,600). Models that count images in many more
# tokens (gpt-4o-mini: 2,833 + 5,667 a tile) set their own (`ModelSpec.image_tokens`).
IMAGE_TOKENS = 2_805
IMAGE_TOKENS_BY_UPSTREAM = (("gpt-4o-mini", 2_833 + 5_667 * 16),)  # (upstream prefix, bound): defaults


# More output tokens than any model writes in one answer: a bound on a model's `max_output_tokens`
# and on a client's `max_tokens`, so no estimate can outgrow the store's 64-bit integers.
MAX_OUTPUT_TOKENS = 1_000_000


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model clients may name, and how to reach and price it."""

    name: str
    provider: str
    upstream: str
    categories: frozenset[str] = frozenset()
    price: Price | None = None
    max_output_tokens: int = 4096
    fallbacks: tuple[str, ...] = ()
    tokenizer: str = "o200k_base"  # or "cl100k_base", or "bytes" (a proven upper bound)
    # Long-prompt tiers: (above, price) pairs, ascending; `price` applies up to the first.
    # A request whose whole prompt exceeds `above` tokens pays that tier's rates on everything.
    price_tiers: tuple[tuple[int, Price], ...] = ()
    # The most input tokens the model accepts (from the config or the price catalog): the bound of
    # a request whose input cannot be counted from the request itself (p402.pipeline.tokens.UNSEEN).
    context_window: int | None = None
    image_tokens: int = IMAGE_TOKENS  # the most one image in a prompt can cost, in this model's tokens

    def price_for(self, prompt_tokens: int) -> Price | None:
        """The rates for a prompt of `prompt_tokens` (fresh + cached + cache-written)."""
        chosen = self.price
        for above, tier in self.price_tiers:
            if prompt_tokens > above:
                chosen = tier
        return chosen


@dataclass(frozen=True, slots=True)
class Budget:
    """A USD cap on one scope for one period."""

    id: str
    scope: Scope
    cap_nanos: int
    period: str
    per: str | None = None
    categories: frozenset[str] | None = None
    mode: str = "enforce"  # or "shadow"
    requires_mandate: bool = False
    owner: str = ""

    def applies_to(self, who: Attribution, categories: frozenset[str]) -> bool:
        if not who.covers(self.scope):
            return False
        return self.categories is None or not self.categories.isdisjoint(categories)

    def member(self, who: Attribution) -> str:
        """The counter member for a `per` budget. Requests that do not name the
        member share one '-' bucket, so leaving a header out never escapes the cap."""
        if self.per is None:
            return ""
        return who.get(self.per) or "-"


@dataclass(frozen=True, slots=True)
class Rule:
    """A non-budget policy on a scope: categories denied, attributions required."""

    scope: Scope
    deny_categories: frozenset[str] = frozenset()
    require: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MandateState:
    """What the decision needs to know about a budget's mandate (verified elsewhere)."""

    digest: str
    budget_id: str
    valid_from: datetime
    valid_until: datetime
    signature_ok: bool = True
    revoked: bool = False
    superseded: bool = False
    exhausted: bool = False

    def problem(self, now: datetime) -> str | None:
        if self.revoked:
            return "revoked"
        if self.superseded:
            return "superseded"
        if self.exhausted:
            return "exhausted"
        if now < self.valid_from:
            return "not yet valid"
        if now >= self.valid_until:
            return "expired"
        return None


@dataclass(frozen=True, slots=True)
class Override:
    """A signed, time-boxed raise of a budget's cap."""

    budget_id: str
    extra_nanos: int
    starts: datetime
    ends: datetime
    signer: str = ""


class CounterKey(NamedTuple):
    """One balance: a budget, a member (for `per` budgets) and a window start.

    A named tuple, not a dataclass: several are built, hashed and compared on every
    request, and a tuple does each natively (it also equals the store's row key).
    """

    budget_id: str
    member: str
    window: int

    def __str__(self) -> str:
        return f"{self.budget_id}/{self.member or '*'}/{self.window}"


@dataclass(frozen=True)
class Policy:
    """An immutable snapshot of everything a decision depends on."""

    version: int
    tenant: str
    models: Mapping[str, ModelSpec]
    budgets: tuple[Budget, ...] = ()
    rules: tuple[Rule, ...] = ()
    mandates: Mapping[str, MandateState] = field(default_factory=dict)  # by budget id
    overrides: tuple[Override, ...] = ()
    known: Mapping[str, frozenset[str]] = field(default_factory=dict)  # kind -> declared ids
    timezone: tzinfo = timezone.utc

    def cap_of(self, budget: Budget, now: datetime) -> int:
        extra = sum(o.extra_nanos for o in self.overrides
                    if o.budget_id == budget.id and o.starts <= now < o.ends)
        return budget.cap_nanos + extra

    def usable_models(self, who: Attribution) -> list[ModelSpec]:
        """The models a request attributed to `who` can be admitted on: priced, and in no category
        that a rule covering `who` denies (what `/v1/models` lists and a CATEGORY_DENIED advises)."""
        denied = frozenset().union(*(r.deny_categories for r in self.rules if who.covers(r.scope)))
        return [m for m in self.models.values() if m.price is not None and denied.isdisjoint(m.categories)]

    def budgets_for(self, who: Attribution, categories: frozenset[str]) -> list[Budget]:
        """The budgets that apply to a request, in `budgets` order.

        Equal to `[b for b in budgets if b.applies_to(who, categories)]`, but
        looked up by scope: a request names at most one id per scope kind, so
        this costs a handful of dict lookups however many departments,
        projects or workflows have budgets (a scan was linear in all of them).
        """
        index = self._budgets_by_scope
        hits: list[tuple[int, Budget]] = []
        for kind in SCOPE_KINDS:
            value = getattr(who, kind)
            if value:
                found = index.get((kind, value))
                if found:
                    hits.extend(found)
        if len(hits) > 1:
            hits.sort(key=_position)  # keep the config's order: it breaks ties between binding budgets
        return [b for _, b in hits if b.categories is None or not b.categories.isdisjoint(categories)]

    @cached_property
    def _budgets_by_scope(self) -> dict[tuple[str, str], list[tuple[int, Budget]]]:
        # Built once per snapshot (a Policy is immutable); cached_property writes the
        # instance __dict__ directly, which a frozen dataclass allows.
        index: dict[tuple[str, str], list[tuple[int, Budget]]] = {}
        for position, b in enumerate(self.budgets):
            index.setdefault((b.scope.kind, b.scope.id), []).append((position, b))
        return index

    @cached_property
    def overridden(self) -> frozenset[str]:
        """The budgets some override names (the others' cap is their own, at any moment)."""
        return frozenset(o.budget_id for o in self.overrides)

    @cached_property
    def memo(self) -> dict[tuple[Attribution, str], Any]:
        """Per-snapshot memory for the decision (`core.decision.prepare`): what it found for an
        attribution and model that cannot change while this snapshot is current."""
        return {}

    def budget(self, budget_id: str) -> Budget | None:
        for b in self.budgets:
            if b.id == budget_id:
                return b
        return None


def _position(hit: tuple[int, Budget]) -> int:
    return hit[0]
