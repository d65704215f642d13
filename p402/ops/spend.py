"""Spend reports: settled, reserved, cap and remaining per group for the current window.

Settled spend comes from the store's rollups (one row per UTC day and
attribution, counted with each settlement), never from scanning the ledger, so a report costs the same with ten rows or ten million. Caps and
remaining come from the budgets' own counters, which are exact.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from p402.core.money import format_usd
from p402.core.periods import boundary_iso, window_for
from p402.core.policy import CounterKey, Policy

__all__ = ["spend_report"]

_DAY_S = 86400


async def spend_report(store: Any, policy: Policy, group_by: str, period: str, now: datetime) -> dict[str, Any]:
    window = window_for(period, now, policy.timezone)
    since_day = int(window.start.timestamp()) // _DAY_S
    until_day = (int(window.end.timestamp()) + _DAY_S - 1) // _DAY_S if window.end else 1 << 40
    settled = await store.spend(group_by, since_day, until_day)
    reserved = await store.reserved_by(group_by)
    budgets = {b.scope.id: b for b in policy.budgets
               if b.scope.kind == group_by and b.period == period and b.per is None and b.categories is None}
    groups = sorted(set(settled) | set(reserved) | set(budgets))
    rows = []
    elapsed_s = max((now - window.start).total_seconds(), 1.0)
    for g in groups:
        cost, requests, denied = settled.get(g, (0, 0, 0))
        b = budgets.get(g)
        counted: tuple[int, int] | None = None
        if b is not None:
            # The budget's own counter is exact for this very window (an hour, a local-time
            # day): it is the settled figure; the daily rollups are the fallback.
            counters = await store.balances([CounterKey(b.id, "", window.key)])
            counted = next(iter(counters.values()))
            cost = counted[0]
        row: dict[str, Any] = {group_by: g or None, "settled_usd": format_usd(cost, 4),
                               "reserved_usd": format_usd(reserved.get(g, 0), 4), "requests": requests,
                               "denied": denied, "burn_usd_per_hour": format_usd(int(cost * 3600 // elapsed_s), 4)}
        if b is not None and counted is not None:
            c_settled, c_reserved = counted
            cap = policy.cap_of(b, now)
            remaining = max(cap - c_settled - c_reserved, 0)
            row.update({"budget_id": b.id, "cap_usd": format_usd(cap), "remaining_usd": format_usd(remaining, 4),
                        "percent": round(100 * (c_settled + c_reserved) / cap, 2) if cap else None})
            if cost > 0 and window.end is not None:
                rate = cost / elapsed_s  # nanos per second; a projection, not money on record
                exhausted = now.timestamp() + remaining / rate
                row["projected_exhaustion"] = (boundary_iso(datetime.fromtimestamp(exhausted, timezone.utc))
                                               if exhausted < window.end.timestamp() else None)
        rows.append(row)
    return {"group_by": group_by, "period": period, "window": {"start": window.start.isoformat(),
            "end": window.end.isoformat() if window.end else None}, "data": rows}
