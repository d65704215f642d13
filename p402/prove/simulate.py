"""What-if: replay recorded traffic against a proposed budget tree.

Every allowed decision in a ledger export is replayed in ledger order through the
real decision code (`core.decision.prepare` then `decide`) under the proposed
`Policy`, with balances kept in memory: a replayed admit reserves its estimate,
and the call's recorded settlement (settle, release or expire row) then moves the
reservation to the cost the provider actually billed. A call the proposed policy
would deny never spends, so its recorded cost is counted as spend stopped.

The result says who would have been denied, when, with which deny code and
budget, and how much spend that would have stopped. Decisions denied in the
recording are not replayed (they never spent). Verify the export first
(`verify_export`); this module trusts its input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import orjson

from p402.core.decision import Ask, Decision, decide, prepare
from p402.core.ledger import ChainRow
from p402.core.money import MoneyError, format_usd, parse_usd
from p402.core.policy import CounterKey, Policy
from p402.core.scopes import Attribution
from p402.prove.calls import SETTLEMENT_KINDS
from p402.prove.export import export_rows
from p402.prove.rows import parse_ts

__all__ = ["WouldDeny", "SimulationReport", "simulate", "simulate_rows", "DEFAULT_MAX_LISTED"]

DEFAULT_MAX_LISTED = 10_000  # denials listed one by one; beyond that only the totals grow


@dataclass
class WouldDeny:
    """One recorded call the proposed policy would have refused."""

    event_id: str
    ts: str
    who: dict[str, str]
    model: str
    deny_code: str
    reason: str
    budget_id: str | None
    estimate_nanos: int
    stopped_nanos: int = 0  # what the call actually cost (filled in at its settlement)

    def as_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "ts": self.ts, "who": self.who, "model": self.model,
                "deny_code": self.deny_code, "reason": self.reason, "budget_id": self.budget_id,
                "estimate_usd": format_usd(self.estimate_nanos), "stopped_usd": format_usd(self.stopped_nanos)}


@dataclass
class SimulationReport:
    """Totals and the list of would-be denials."""

    replayed: int = 0
    denied: int = 0
    recorded_spend_nanos: int = 0  # every settled cost in the export
    stopped_nanos: int = 0  # settled cost of calls the proposal would deny
    by_code: dict[str, int] = field(default_factory=dict)
    by_budget: dict[str, list[int]] = field(default_factory=dict)  # budget -> [denials, stopped nanos]
    shadow_hits: dict[str, int] = field(default_factory=dict)
    unknown_models: dict[str, int] = field(default_factory=dict)  # models the proposal does not define
    would_deny: list[WouldDeny] = field(default_factory=list)

    @property
    def kept_nanos(self) -> int:
        return self.recorded_spend_nanos - self.stopped_nanos

    def summary(self) -> str:
        lines = [f"replayed {self.replayed} allowed calls: {self.denied} would be denied, stopping "
                 f"${format_usd(self.stopped_nanos)} of ${format_usd(self.recorded_spend_nanos)} recorded spend"]
        for code, count in sorted(self.by_code.items()):
            lines.append(f"  {code}: {count}")
        for budget, (count, stopped) in sorted(self.by_budget.items()):
            lines.append(f"  budget {budget}: {count} denials, ${format_usd(stopped)} stopped")
        for model, count in sorted(self.unknown_models.items()):
            lines.append(f"  not replayed: {count} calls to {model}, which the proposal does not define")
        for budget, count in sorted(self.shadow_hits.items()):
            lines.append(f"  shadow budget {budget} would have denied {count} calls (shadow: they were admitted)")
        if self.would_deny:
            lines.append(f"the first {len(self.would_deny)} that would be denied:")
            for d in self.would_deny:
                who = ", ".join(f"{k} {v}" for k, v in d.who.items() if v)
                lines.append(f"  {d.ts} {d.event_id} {who}: {d.model}, {d.deny_code}"
                             f"{f' on {d.budget_id}' if d.budget_id else ''}, ${format_usd(d.stopped_nanos)} stopped")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "denied": self.denied,
                "recorded_spend_usd": format_usd(self.recorded_spend_nanos),
                "stopped_usd": format_usd(self.stopped_nanos), "kept_usd": format_usd(self.kept_nanos),
                "by_code": dict(self.by_code),
                "by_budget": {b: {"denials": c, "stopped_usd": format_usd(s)} for b, (c, s) in self.by_budget.items()},
                "shadow_hits": dict(self.shadow_hits), "unknown_models": dict(self.unknown_models),
                "would_deny": [d.as_dict() for d in self.would_deny]}


@dataclass(slots=True)
class _Hold:
    """A replayed call waiting for its recorded settlement."""

    denied: bool
    keys: tuple[CounterKey, ...] = ()
    estimate: int = 0
    denial: WouldDeny | None = None  # listed denial, to fill in what it stopped
    budget_id: str | None = None


def _attribution(body: Mapping[str, Any], tenant: str) -> Attribution:
    def text(name: str) -> str:
        value = body.get(name)
        return value if isinstance(value, str) else ""
    return Attribution(tenant=text("tenant") or tenant, key=text("key"), department=text("department"),
                       employee=text("employee"), workflow=text("workflow"), customer=text("customer"),
                       project=text("project"), feature=text("feature"))


def _ask(body: Mapping[str, Any], policy: Policy) -> Ask | None:
    model = policy.models.get(str(body.get("model")))
    if model is None:
        return None
    gateway_set = bool(body.get("max_tokens_set"))
    max_tokens = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else None
    # Embeddings carry no output bound; a chat call always has one (the client's or the gateway's).
    wants_output = body.get("route") != "embeddings" and (max_tokens is not None or gateway_set)
    input_tokens, completions = body.get("input_tokens"), body.get("completions")
    return Ask(who=_attribution(body, policy.tenant), model=model,
               input_tokens=input_tokens if isinstance(input_tokens, int) else 0,
               max_tokens=None if gateway_set else max_tokens, wants_output=wants_output,
               now=parse_ts(str(body["ts"])), presented_mandate=body.get("mandate") or None,
               completions=completions if isinstance(completions, int) and completions >= 1 else 1)


def _cost(body: Mapping[str, Any]) -> int:
    try:
        return parse_usd(body.get("cost_usd") or "0")
    except MoneyError:
        return 0


class _Replay:
    """In-memory balances and open reservations of the replay."""

    def __init__(self, policy: Policy, max_listed: int) -> None:
        self.policy, self.max_listed = policy, max_listed
        self.balances: dict[CounterKey, tuple[int, int]] = {}
        self.holds: dict[str, _Hold] = {}
        self.report = SimulationReport()

    def decision(self, body: Mapping[str, Any]) -> None:
        event_id = body.get("event_id")
        if body.get("outcome") != "allow" or not isinstance(event_id, str):
            return
        ask = _ask(body, self.policy)
        if ask is None:
            name = str(body.get("model"))
            self.report.unknown_models[name] = self.report.unknown_models.get(name, 0) + 1
            return
        self.report.replayed += 1
        outcome = prepare(ask, self.policy)
        if not isinstance(outcome, Decision):
            outcome = decide(outcome, {k: self.balances.get(k, (0, 0)) for k in outcome.keys})
        for budget_id in outcome.shadow_denials:
            self.report.shadow_hits[budget_id] = self.report.shadow_hits.get(budget_id, 0) + 1
        if outcome.allowed:
            for k in outcome.reserve_on:
                settled, reserved = self.balances.get(k, (0, 0))
                self.balances[k] = (settled, reserved + outcome.estimate_nanos)
            self.holds[event_id] = _Hold(False, outcome.reserve_on, outcome.estimate_nanos)
            return
        self._deny(body, event_id, outcome)

    def _deny(self, body: Mapping[str, Any], event_id: str, outcome: Decision) -> None:
        report = self.report
        code = outcome.deny_code or "DENIED"
        budget_id = outcome.binding.charge.budget.id if outcome.binding is not None else None
        report.denied += 1
        report.by_code[code] = report.by_code.get(code, 0) + 1
        if budget_id is not None:
            report.by_budget.setdefault(budget_id, [0, 0])[0] += 1
        denial = None
        if len(report.would_deny) < self.max_listed:
            who = _attribution(body, self.policy.tenant).as_dict()
            denial = WouldDeny(event_id, str(body.get("ts")), who, str(body.get("model")), code, outcome.reason,
                               budget_id, outcome.estimate_nanos)
            report.would_deny.append(denial)
        # What the denial stopped is known only when the recorded call settles.
        self.holds[event_id] = _Hold(True, denial=denial, budget_id=budget_id)

    def settlement(self, body: Mapping[str, Any]) -> None:
        cost = _cost(body)
        self.report.recorded_spend_nanos += cost
        ref = body.get("ref")
        hold = self.holds.pop(ref, None) if isinstance(ref, str) else None
        if hold is None:
            return
        if not hold.denied:
            for k in hold.keys:
                settled, reserved = self.balances.get(k, (0, 0))
                self.balances[k] = (settled + cost, reserved - hold.estimate)
            return
        self.report.stopped_nanos += cost
        if hold.denial is not None:
            hold.denial.stopped_nanos = cost
        if hold.budget_id is not None:
            self.report.by_budget[hold.budget_id][1] += cost


def simulate_rows(rows: Iterable[ChainRow], policy: Policy, max_listed: int = DEFAULT_MAX_LISTED) -> SimulationReport:
    """Replay ledger rows (in seq order) under `policy`."""
    replay = _Replay(policy, max_listed)
    for row in rows:
        body = orjson.loads(row.body)
        kind = body.get("kind")
        if kind == "decision":
            replay.decision(body)
        elif kind in SETTLEMENT_KINDS:
            replay.settlement(body)
    return replay.report


def simulate(export_path: str | Path, proposed_policy_builder: Policy | Callable[[], Policy],
             max_listed: int = DEFAULT_MAX_LISTED) -> SimulationReport:
    """Replay a jsonl export under a proposed policy (a `Policy`, or a function that builds one)."""
    policy = proposed_policy_builder if isinstance(proposed_policy_builder, Policy) else proposed_policy_builder()
    return simulate_rows(export_rows(export_path), policy, max_listed)
