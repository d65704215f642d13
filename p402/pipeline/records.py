"""Ledger bodies: what each decision, settlement and policy change records.

One request is one `event_id`: its decision row and its settlement row share it
(the settlement also names it in `ref`), so `GET /admin/v1/ledger/events/{id}`
shows the whole story of a request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from p402.core.decision import Ask, Balance, Decision
from p402.core.ids import new_id
from p402.core.money import format_usd
from p402.core.periods import ledger_ts
from p402.core.scopes import Attribution
from p402.pipeline.ports import HoldInfo

__all__ = ["iso", "decision_entry", "settlement_entry", "expiry_entry", "policy_entry", "binding_view"]


iso = ledger_ts  # a ledger timestamp (core.periods.ledger_ts), under the name callers here use


_WHO_KEYS = ("key", "department", "employee", "workflow", "customer", "project", "feature")


def _who(who: Attribution) -> dict[str, Any]:
    return {"tenant": who.tenant, "key": who.key, "department": who.department or None,
            "employee": who.employee or None, "workflow": who.workflow or None, "customer": who.customer or None,
            "project": who.project or None, "feature": who.feature or None}


def binding_view(b: Balance | None, estimate_nanos: int = 0, allowed: bool = False) -> dict[str, Any] | None:
    """The binding budget as the deny body and the ledger show it (SPEC §3)."""
    if b is None:
        return None
    budget, window = b.charge.budget, b.charge.window
    remaining = b.headroom_nanos - (estimate_nanos if allowed else 0)
    return {"id": budget.id, "scope": b.scope_label, "cap_usd": format_usd(b.charge.cap_nanos),
            "settled_usd": format_usd(b.settled_nanos, 4), "reserved_usd": format_usd(b.reserved_nanos, 4),
            "remaining_usd": format_usd(max(remaining, 0), 4), "period": budget.period,
            "resets_at": window.resets_at if window is not None else None}


def decision_entry(event_id: str, now: datetime, ask: Ask, route: str, decision: Decision, policy_version: int,
                   hold_id: str | None = None) -> dict[str, Any]:
    model = ask.model
    flags = [f"shadow:{b}" for b in decision.shadow_denials]
    return {
        "event_id": event_id, "ts": iso(now), "kind": "decision",
        "outcome": "allow" if decision.allowed else "deny", **_who(ask.who),
        "route": route, "model": model.name, "provider": model.provider, "upstream": model.upstream,
        "input_tokens": ask.input_tokens, "max_tokens": decision.max_tokens if decision.allowed else ask.max_tokens,
        "max_tokens_set": decision.max_tokens_set, "completions": ask.completions,
        "estimate_usd": format_usd(decision.estimate_nanos) if decision.estimate_nanos else None,
        "deny_code": decision.deny_code, "reason": decision.reason,
        "recovery": decision.recovery.as_dict() if decision.recovery else None,
        "binding": binding_view(decision.binding, decision.estimate_nanos, decision.allowed),
        "policy_version": policy_version, "hold_id": hold_id, "flags": flags,
        "mandate": ask.presented_mandate,
    }


def settlement_entry(event_id: str, now: datetime, ask: Ask, hold_id: str, estimate_nanos: int, cost_nanos: int,
                     usage: Any, status: str, policy_version: int, error: str | None = None,
                     unmetered: bool = False) -> dict[str, Any]:
    """A settle (cost > 0) or release (nothing billed) row. `unmetered`: no usage report came, so the
    cost is the reserved estimate (the tokens are what p402 saw)."""
    flags = ["unmetered"] if unmetered else []
    if cost_nanos > estimate_nanos:
        flags.append("overrun")
    return {
        "event_id": event_id, "ref": event_id, "ts": iso(now), "kind": "settle" if cost_nanos else "release",
        **_who(ask.who), "model": ask.model.name, "provider": ask.model.provider, "hold_id": hold_id,
        "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens, "cache_write_tokens": usage.cache_write_tokens,
        "usage_reported": usage.reported, "provider_cost_usd": usage.provider_cost_usd,
        "estimate_usd": format_usd(estimate_nanos), "cost_usd": format_usd(cost_nanos),
        "overrun_usd": format_usd(cost_nanos - estimate_nanos) if cost_nanos > estimate_nanos else None,
        "status": status, "error": error, "policy_version": policy_version, "flags": flags,
    }


def expiry_entry(now: datetime, hold: HoldInfo, tenant: str, policy_version: int) -> dict[str, Any]:
    """An orphaned hold settled at its reserved amount when its lease ran out (SPEC §2.4).

    The request is gone, so the row says whose it was from what the hold kept of its decision:
    the same attribution, model and provider as a settle row. `tenant` is the store's own, for
    holds opened before holds kept it; `policy_version` is the one current as the row is written.
    """
    kept = hold.context
    who = {k: kept.get(k) or None for k in _WHO_KEYS}
    who["tenant"] = kept.get("tenant") or tenant
    return {
        "event_id": hold.event_id, "ref": hold.event_id, "ts": iso(now), "kind": "expire", **who,
        "model": kept.get("model") or None, "provider": kept.get("provider") or None, "hold_id": hold.id,
        "estimate_usd": format_usd(hold.amount_nanos), "cost_usd": format_usd(hold.amount_nanos),
        "flags": ["orphaned"], "policy_version": policy_version, "id": new_id("exp", now),
        "reason": "the request vanished; its hold's lease expired and it was settled at the reserved amount",
    }


def policy_entry(event_id: str, now: datetime, tenant: str, action: str, object_kind: str, object_id: str,
                 actor: str, before: Any, after: Any) -> dict[str, Any]:
    """A change of policy: budget, key, rule, org, mandate or override."""
    return {"event_id": event_id, "ts": iso(now), "kind": "policy", "tenant": tenant, "action": action,
            "object": object_kind, "object_id": object_id, "actor": actor, "before": before, "after": after,
            "reason": f"{object_kind} {object_id} {action} by {actor}"}
