"""What the dashboard shows: department tiles, totals, and ledger rows projected for the browser.

Everything here is data (JSON-ready dicts with money as exact decimal strings);
the browser renders it with `textContent`, so no value is ever parsed as HTML.
Tiles come from `spend_report` (rollups and budget counters, never a ledger
scan), so building them costs the same with ten rows or ten million.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from p402.core.decision import DENY_CODES
from p402.core.money import format_usd, parse_usd
from p402.core.periods import window_for
from p402.core.policy import CounterKey
from p402.ops.spend import spend_report
from p402.pipeline.ports import LedgerEvent, LedgerFilter
from p402.pipeline.records import iso

__all__ = ["tiles", "recent_denials", "event_view", "snapshot", "TILE_PERIOD", "RECENT_DENIALS"]

TILE_PERIOD = "month"  # the tiles show the calendar month, the period finance closes on
RECENT_DENIALS = 50  # denials in the first paint; the live feed keeps up to 100 in the browser

# The ledger fields a browser needs; the rest (hashes, before/after policy objects,
# token counts) stays behind the admin API so a busy stream stays small.
_EVENT_FIELDS = ("event_id", "ts", "kind", "outcome", "tenant", "department", "employee", "workflow", "key",
                 "project", "customer", "feature", "model", "route", "deny_code", "reason", "estimate_usd",
                 "cost_usd", "overrun_usd", "status", "flags", "action", "object", "object_id", "actor")
_RECOVERY_FIELDS = ("action", "detail", "max_tokens", "retry_after_s", "header", "allowed_models", "owner")
_BINDING_FIELDS = ("id", "scope", "cap_usd", "remaining_usd", "period", "resets_at")


def event_view(event: LedgerEvent) -> dict[str, Any]:
    """One ledger row as the dashboard sees it: its seq plus the fields worth showing."""
    body = event.body
    out: dict[str, Any] = {"seq": event.seq}
    for name in _EVENT_FIELDS:
        value = body.get(name)
        if value is not None and value != []:
            out[name] = value
    recovery = body.get("recovery")
    if isinstance(recovery, Mapping):
        out["recovery"] = {k: recovery[k] for k in _RECOVERY_FIELDS if recovery.get(k) is not None}
    binding = body.get("binding")
    if isinstance(binding, Mapping) and body.get("outcome") == "deny":
        out["binding"] = {k: binding[k] for k in _BINDING_FIELDS if binding.get(k) is not None}
    return out


async def _tenant_budget(store: Any, policy: Any, now: datetime) -> dict[str, Any] | None:
    """The tenant-wide monthly cap, if one is configured, with its exact counters."""
    for b in policy.budgets:
        if (b.scope.kind == "tenant" and b.period == TILE_PERIOD and b.per is None and b.categories is None
                and b.mode == "enforce"):
            window = window_for(b.period, now, policy.timezone)
            settled, reserved = (await store.balances([CounterKey(b.id, "", window.key)])).popitem()[1]
            cap = policy.cap_of(b, now)
            return {"budget_id": b.id, "cap_usd": format_usd(cap), "used_usd": format_usd(settled + reserved, 4),
                    "remaining_usd": format_usd(max(cap - settled - reserved, 0), 4),
                    "percent": round(100 * (settled + reserved) / cap, 2) if cap else None}
    return None


async def tiles(store: Any, policy: Any, departments: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A tile per department for the month, plus totals across the tenant.

    Declared departments with no spend yet still get a tile, so a quiet
    department shows $0 rather than being missing.
    """
    report = await spend_report(store, policy, "department", TILE_PERIOD, now)
    rows = {r["department"]: r for r in report["data"]}
    for dept in departments:
        rows.setdefault(dept, {"department": dept, "settled_usd": "0.0000", "reserved_usd": "0.0000",
                               "requests": 0, "denied": 0, "burn_usd_per_hour": "0.0000"})
    # None (requests from keys outside any department) sorts last, the rest by id: tiles never jump around.
    ordered = sorted(rows.values(), key=lambda r: (r["department"] is None, r["department"] or ""))
    totals: dict[str, Any] = {
        "settled_usd": format_usd(sum(parse_usd(r["settled_usd"]) for r in ordered), 4),
        "reserved_usd": format_usd(sum(parse_usd(r["reserved_usd"]) for r in ordered), 4),
        "burn_usd_per_hour": format_usd(sum(parse_usd(r["burn_usd_per_hour"]) for r in ordered), 4),
        "requests": sum(r["requests"] for r in ordered), "denied": sum(r["denied"] for r in ordered),
        "tenant_budget": await _tenant_budget(store, policy, now)}
    return {"tenant": policy.tenant, "period": TILE_PERIOD, "window": report["window"], "generated_at": iso(now),
            "policy_version": policy.version, "departments": ordered, "totals": totals}


async def recent_denials(store: Any, limit: int = RECENT_DENIALS) -> list[dict[str, Any]]:
    """The newest denials, newest first.

    One indexed read per deny code (the ledger's (deny_code, seq) index) rather
    than a scan of decisions, so the cost does not grow with admitted traffic.
    """
    rows: list[LedgerEvent] = []
    for code in DENY_CODES:
        rows.extend(await store.events(LedgerFilter(deny_code=code, kind="decision", limit=limit)))
    rows.sort(key=lambda r: r.seq, reverse=True)
    return [event_view(r) for r in rows[:limit]]


async def snapshot(store: Any, policy: Any, departments: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The first paint: tiles, totals, the recent denials and the ledger head they reflect."""
    head = await store.events(LedgerFilter(limit=1))
    out = await tiles(store, policy, departments, now)
    out["denials"] = await recent_denials(store)
    out["last_seq"] = head[0].seq if head else 0
    return out
