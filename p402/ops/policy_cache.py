"""The live policy snapshot: config (models, timezone) + store objects (budgets, rules, org, mandates).

Replicas share the store, so each one polls the store's policy version (one
indexed read) and rebuilds its snapshot when another replica changed policy.
A change made through this process refreshes at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

from p402.config import Config, parse_budget
from p402.core.money import format_usd
from p402.core.policy import Policy, Rule
from p402.core.scopes import parse_scope
from p402.mandates.book import policy_parts

__all__ = ["PolicyCache", "budget_to_dict", "rule_to_dict", "POLL_INTERVAL_S"]

POLL_INTERVAL_S = 1.0
log = logging.getLogger("p402.policy")


def budget_to_dict(b: Any) -> dict[str, Any]:
    """The stored (and admin API) form of a budget: the config file's form."""
    out: dict[str, Any] = {"id": b.id, "scope": str(b.scope), "cap_usd": format_usd(b.cap_nanos), "period": b.period,
                           "mode": b.mode, "requires_mandate": b.requires_mandate}
    if b.per:
        out["per"] = b.per
    if b.categories is not None:
        out["categories"] = sorted(b.categories)
    if b.owner:
        out["owner"] = b.owner
    return out


def rule_to_dict(r: Rule) -> dict[str, Any]:
    return {"scope": str(r.scope), "deny_categories": sorted(r.deny_categories), "require": list(r.require)}


class PolicyCache:
    """Holds the current `Policy`; `refresh()` rebuilds it from the store when its version moved."""

    def __init__(self, config: Config, store: Any, clock: Callable[[], datetime] | None = None) -> None:
        self.config, self.store = config, store
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.models = {m.name: m for m in config.models}
        self._policy = Policy(version=-1, tenant=config.tenant, models=self.models, timezone=ZoneInfo(config.timezone))

    @property
    def current(self) -> Policy:
        return self._policy

    async def refresh(self, force: bool = False) -> bool:
        version = await self.store.policy_version()
        if version == self._policy.version and not force:
            return False
        budgets = await self.store.objects("budget")
        rules = await self.store.objects("rule")
        owners = {f"department:{d}": str(v.get("owner") or "") for d, v in (await self.store.objects("department")).items()}
        known = {}
        for kind in ("project", "customer", "feature", "workflow"):
            ids = await self.store.objects(kind)
            if ids:
                known[kind] = frozenset(ids)
        configured = tuple(parse_budget(b, f"budget {bid}", owners=owners) for bid, b in budgets.items())
        # Signed documents: verified once per process (memoised by the mandates
        # package), so a refresh costs no cryptography for documents seen before.
        parts = policy_parts(await self.store.objects("mandate"), await self.store.objects("override"),
                             await self.store.objects("revocation"), budgets=configured, now=self.clock())
        for problem in parts.problems:
            log.warning("stored mandate document skipped: %s", problem)
        self._policy = Policy(
            version=version, tenant=self.config.tenant, models=self.models, budgets=parts.budgets,
            rules=tuple(Rule(parse_scope(r["scope"]), frozenset(r.get("deny_categories") or ()),
                             tuple(r.get("require") or ())) for r in rules.values()),
            mandates=parts.mandates, overrides=parts.overrides, known=known, timezone=ZoneInfo(self.config.timezone))
        return True
