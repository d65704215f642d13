"""Building plans, ledger entries and reservations the way the pipeline does, for the store tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from p402.core.decision import Ask, Decision, Plan, decide, prepare
from p402.core.ids import new_id
from p402.core.ledger import verify_chain
from p402.core.money import format_usd, parse_usd
from p402.core.policy import Budget, ModelSpec, Policy, Price
from p402.core.scopes import Attribution, Scope

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
DAY = int(NOW.timestamp()) // 86400
# $1 per Mtok in, $2 per Mtok out: 1000 tokens in and 500 out cost exactly $0.001 + $0.001.
PRICE = Price(input=parse_usd("1"), output=parse_usd("2"))
MODEL = ModelSpec(name="m-std", provider="simulated", upstream="m-std", categories=frozenset({"chat"}), price=PRICE)
OTHER_MODEL = ModelSpec(name="m-two", provider="simulated", upstream="m-two", categories=frozenset({"chat"}),
                        price=PRICE)
ESTIMATE = parse_usd("0.002")  # input 1000 tokens, max_tokens 500


def budget(ident: str, scope: str, cap_usd: str, period: str = "month", per: str | None = None) -> Budget:
    kind, _, name = scope.partition(":")
    return Budget(id=ident, scope=Scope(kind, name), cap_nanos=parse_usd(cap_usd), period=period, per=per)


def policy(*budgets: Budget) -> Policy:
    return Policy(version=1, tenant="acme", models={MODEL.name: MODEL, OTHER_MODEL.name: OTHER_MODEL},
                  budgets=budgets)


def who(employee: str = "alice", department: str = "eng", **extra: str) -> Attribution:
    return Attribution(tenant="acme", key=f"k-{employee}", department=department, employee=employee, **extra)


def plan_for(pol: Policy, person: Attribution, model: ModelSpec = MODEL, max_tokens: int = 500,
             now: datetime = NOW) -> Plan:
    prepared = prepare(Ask(who=person, model=model, input_tokens=1000, max_tokens=max_tokens, wants_output=True,
                           now=now), pol)
    assert isinstance(prepared, Plan), prepared
    return prepared


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decision_entry(person: Attribution, model: ModelSpec = MODEL,
                   now: datetime = NOW) -> Callable[[Decision, str | None], dict[str, Any]]:
    """The entry builder the pipeline passes to reserve: the decision's ledger body."""
    def build(decision: Decision, hold_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "event_id": new_id("evt", now), "ts": iso(now), "kind": "decision",
            "outcome": "allow" if decision.allowed else "deny", "deny_code": decision.deny_code,
            "reason": decision.reason, "estimate_usd": format_usd(decision.estimate_nanos, 4),
            "model": model.name, "hold_id": hold_id, **person.as_dict()}
        return body
    return build


async def reserve(store: Any, pol: Policy, person: Attribution, model: ModelSpec = MODEL, max_tokens: int = 500,
                  lease_s: float = 60.0, now: datetime = NOW) -> tuple[Decision, str | None, dict[str, Any]]:
    """Reserve as the pipeline does; also returns the decision's ledger body."""
    bodies: list[dict[str, Any]] = []
    builder = decision_entry(person, model, now)

    def entry(decision: Decision, hold_id: str | None) -> dict[str, Any]:
        bodies.append(builder(decision, hold_id))
        return bodies[-1]

    decision, hold_id = await store.reserve(plan_for(pol, person, model, max_tokens, now), decide, entry,
                                            lease_s, now)
    return decision, hold_id, bodies[-1]


def settle_entry(decision_body: dict[str, Any], cost_nanos: int, now: datetime = NOW) -> dict[str, Any]:
    kind = "settle" if cost_nanos else "release"
    return {"event_id": decision_body["event_id"], "ts": iso(now), "kind": kind,
            "ref": decision_body["event_id"], "cost_usd": format_usd(cost_nanos, 4)}


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def chain_ok(store: Any) -> int:
    """Assert the store's ledger verifies; returns how many rows it has."""
    count, fault = verify_chain(store.chain())
    assert fault is None, str(fault)
    return count
