"""Rebuilding the policy's mandate parts from store objects, through the real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mandate_helpers import NOW, OWNER_KEY, USD, mandate_spec, override_spec

from p402.core.ids import new_id
from p402.core.policy import Budget
from p402.mandates.book import MandateBook, policy_parts, states_from_objects
from p402.mandates.signing import sign_mandate, sign_override, sign_revocation
from p402.stores.sqlite import SqliteStore


def _persist_and_read(path: Path, accepted: list[Any]) -> dict[str, dict[str, Any]]:
    """Store each accepted document as the lead's admin routes will, then read them back by kind."""
    async def run() -> dict[str, dict[str, Any]]:
        store = SqliteStore(str(path))
        try:
            changes = [(a.kind, a.digest, dict(a.document)) for a in accepted]
            entries = [{"kind": "policy", "event_id": new_id("evt", NOW), "ts": NOW.isoformat(),
                        "change": dict(a.summary)} for a in accepted]
            await store.change_objects(changes, entries)
            return {kind: await store.objects(kind) for kind in ("mandate", "revocation", "override")}
        finally:
            await store.close()
    return asyncio.run(run())


def test_documents_survive_the_store_and_rebuild_the_same_policy(tmp_path: Path, budgets: dict[str, Budget]) -> None:
    book = MandateBook()
    first = book.submit(sign_mandate(mandate_spec(cap_usd="4000"), OWNER_KEY, now=NOW), budgets, NOW)
    second = book.submit(sign_mandate(mandate_spec(cap_usd="3000", nonce=2, previous=first.digest), OWNER_KEY,
                                      now=NOW), budgets, NOW)
    bot = book.submit(sign_mandate(mandate_spec(budget="bot-hourly", scope="workflow:support-bot", period="hour",
                                                cap_usd="5"), OWNER_KEY, now=NOW), budgets, NOW)
    revoked = book.submit(sign_revocation(bot.digest, "retired", OWNER_KEY, now=NOW), budgets, NOW)
    bump = book.submit(sign_override(override_spec(), OWNER_KEY, now=NOW), budgets, NOW)

    stored = _persist_and_read(tmp_path / "p402.db", [first, second, bot, revoked, bump])
    assert set(stored["mandate"]) == {first.digest, second.digest, bot.digest}

    parts = policy_parts(stored["mandate"], stored["override"], stored["revocation"], budgets=budgets.values(),
                         now=NOW)
    assert parts.problems == ()
    assert parts.mandates == book.mandate_states(budgets)
    assert parts.mandates["eng-month"].digest == second.digest
    assert parts.mandates["bot-hourly"].revoked
    assert parts.overrides == book.overrides(budgets, NOW)
    caps = {b.id: b.cap_nanos for b in parts.budgets}
    assert caps["eng-month"] == 3000 * USD  # the mandate's cap, below the configured 5000

    # The hook PolicyCache calls, given the budgets, says the same.
    assert states_from_objects(stored["mandate"], stored["override"], stored["revocation"], budgets) == \
        (parts.mandates, parts.overrides)


def test_a_document_deleted_from_the_store_stops_counting(budgets: dict[str, Budget]) -> None:
    document = sign_mandate(mandate_spec(), OWNER_KEY, now=NOW)
    digest = document["proof"]["digest"]
    assert "eng-month" in policy_parts({digest: document}, {}, budgets=budgets).mandates
    assert policy_parts({}, {}, budgets=budgets).mandates == {}


def test_without_budgets_the_hook_fails_closed(budgets: dict[str, Budget]) -> None:
    document = sign_mandate(mandate_spec(), OWNER_KEY, now=NOW)
    bump = sign_override(override_spec(), OWNER_KEY, now=NOW)
    mandates, overrides = states_from_objects({"m": document}, {"o": bump})
    assert mandates["eng-month"].signature_ok is False  # owners unknown: no signer can be trusted
    assert overrides == ()
