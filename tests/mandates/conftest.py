"""Fixtures for the mandate tests: two fixed keys, a clock, budgets owned by one of them."""

from __future__ import annotations

from datetime import datetime

import pytest
from mandate_helpers import NOW, OWNER_KEY, STRANGER_KEY, USD

from p402.core.policy import Budget
from p402.core.scopes import Scope
from p402.mandates.identity import address_of


@pytest.fixture
def owner_key() -> str:
    return OWNER_KEY


@pytest.fixture
def owner() -> str:
    return address_of(OWNER_KEY)


@pytest.fixture
def stranger_key() -> str:
    return STRANGER_KEY


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def budgets(owner: str) -> dict[str, Budget]:
    return {
        "eng-month": Budget("eng-month", Scope("department", "eng"), 5000 * USD, "month",
                            requires_mandate=True, owner=owner),
        "bot-hourly": Budget("bot-hourly", Scope("workflow", "support-bot"), 5 * USD, "hour", owner=owner),
        "orphan": Budget("orphan", Scope("department", "ops"), 100 * USD, "month", requires_mandate=True),
    }
