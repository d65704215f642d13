"""Constants and builders shared by the mandate tests (a uniquely named module, importable from any test here)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from p402.core.decision import Ask, Decision, Plan, prepare
from p402.core.policy import Budget, ModelSpec, Policy, Price
from p402.core.scopes import Attribution
from p402.mandates.book import MandateBook

# Fixed test keys (public knowledge, worthless): stable addresses make failures readable.
OWNER_KEY = "0x" + "4c" * 32
STRANGER_KEY = "0x" + "5d" * 32
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=timezone.utc)
USD = 10**9
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def mandate_spec(**changes: object) -> dict[str, Any]:
    """A valid mandate spec for eng-month; keyword arguments replace or add keys."""
    spec: dict[str, Any] = {
        "budget": "eng-month", "scope": "department:eng", "cap_usd": "5000.00", "period": "month",
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2026-12-31T23:59:59Z", "nonce": 1,
    }
    spec.update(changes)
    return spec


def override_spec(**changes: object) -> dict[str, Any]:
    """A valid override spec: +$250 on eng-month for the week around NOW."""
    spec: dict[str, Any] = {"budget": "eng-month", "extra_usd": "250.00", "window_start": "2026-03-14T00:00:00Z",
                            "window_end": "2026-03-21T00:00:00Z", "nonce": 1}
    spec.update(changes)
    return spec


def decide_for_eng(book: MandateBook, budgets: dict[str, Budget], at: datetime) -> Decision | Plan:
    """Run the real pre-balance decision for one eng request under a policy built from the book."""
    model = ModelSpec("gpt-4o-mini", "openai", "gpt-4o-mini", frozenset({"chat"}), Price(150_000, 600_000))
    policy = Policy(version=1, tenant="acme", models={model.name: model},
                    budgets=book.effective_budgets(budgets), mandates=book.mandate_states(budgets),
                    overrides=book.overrides(budgets, at))
    who = Attribution(tenant="acme", key="k-alice", department="eng", employee="alice")
    return prepare(Ask(who, model, input_tokens=100, max_tokens=50, wants_output=True, now=at), policy)
