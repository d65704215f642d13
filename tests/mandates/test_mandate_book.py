"""The mandate book: who may sign, what is active when, and what the decision then says."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from mandate_helpers import NOW, OWNER_KEY, STRANGER_KEY, USD, decide_for_eng, mandate_spec, override_spec

from p402.core.decision import Decision, Plan
from p402.core.policy import Budget
from p402.mandates import book as book_module
from p402.mandates.book import MandateBook
from p402.mandates.identity import address_of
from p402.mandates.errors import (CONFLICT, MANDATE_INACTIVE, MISMATCH, SIGNATURE_INVALID, UNKNOWN_BUDGET,
                                  UNKNOWN_MANDATE, MandateRejected)
from p402.mandates.signing import sign_mandate, sign_override, sign_revocation

Budgets = dict[str, Budget]


def _mandate(key: str = OWNER_KEY, **changes: Any) -> dict[str, Any]:
    return sign_mandate(mandate_spec(**changes), key, now=NOW)


def _refused(book: MandateBook, document: dict[str, Any], budgets: Budgets, at: datetime = NOW) -> MandateRejected:
    with pytest.raises(MandateRejected) as caught:
        book.submit(document, budgets, at)
    return caught.value


def _denial(result: Decision | Plan) -> tuple[str | None, str]:
    assert isinstance(result, Decision), f"expected a denial, got {result!r}"
    return result.deny_code, result.reason


def test_a_budget_that_requires_a_mandate_is_inactive_without_one(budgets: Budgets) -> None:
    code, reason = _denial(decide_for_eng(MandateBook(), budgets, NOW))
    assert code == "MANDATE_INACTIVE" and "missing" in reason


def test_a_valid_mandate_activates_the_budget(budgets: Budgets, owner: str) -> None:
    book = MandateBook()
    accepted = book.submit(_mandate(), budgets, NOW)
    assert accepted.new and accepted.kind == "mandate" and accepted.budget_id == "eng-month"
    assert accepted.summary["cap_usd"] == "5000.00" and accepted.signer == owner.lower()
    state = book.mandate_states(budgets)["eng-month"]
    assert state.digest == accepted.digest and state.problem(NOW) is None
    assert isinstance(decide_for_eng(book, budgets, NOW), Plan)


def test_resubmitting_the_same_document_is_idempotent(budgets: Budgets) -> None:
    book = MandateBook()
    first = book.submit(_mandate(), budgets, NOW)
    again = book.submit(_mandate(), budgets, NOW)
    assert again.digest == first.digest and not again.new
    # The identity is the digest: the same signature with v written as a bare recovery id is the same mandate.
    variant = _mandate()
    signature = variant["proof"]["signature"]
    variant["proof"]["signature"] = signature[:-2] + f"{int(signature[-2:], 16) - 27:02x}"
    assert not book.submit(variant, budgets, NOW).new
    assert len(book.documents()) == 1


def test_only_the_budget_owner_may_sign_a_mandate(budgets: Budgets) -> None:
    error = _refused(MandateBook(), _mandate(STRANGER_KEY), budgets)
    assert error.code == SIGNATURE_INVALID and error.field == "proof.signer"
    assert "only the owner of budget eng-month" in str(error)


def test_a_budget_without_an_owner_accepts_no_mandate(budgets: Budgets) -> None:
    document = _mandate(budget="orphan", scope="department:ops")
    assert _refused(MandateBook(), document, budgets).code == SIGNATURE_INVALID


def test_unknown_budget_and_mismatched_terms_are_refused(budgets: Budgets) -> None:
    book = MandateBook(tenant="acme")
    assert _refused(book, _mandate(budget="nope"), budgets).code == UNKNOWN_BUDGET
    error = _refused(book, _mandate(scope="department:sales"), budgets)
    assert error.code == MISMATCH and "department:eng" in str(error)
    assert _refused(book, _mandate(period="day"), budgets).code == MISMATCH
    assert _refused(book, _mandate(tenant="globex"), budgets).code == MISMATCH
    assert book.submit(_mandate(tenant="acme"), budgets, NOW).new


def test_an_already_expired_mandate_is_refused(budgets: Budgets) -> None:
    error = _refused(MandateBook(), _mandate(valid_until="2026-02-28T23:59:59Z"), budgets)
    assert error.code == MANDATE_INACTIVE and "expired at 2026-02-28T23:59:59Z" in str(error)


def test_a_mandate_expires(budgets: Budgets) -> None:
    book = MandateBook()
    book.submit(_mandate(valid_until="2026-03-31T23:59:59Z"), budgets, NOW)
    last_second = datetime(2026, 3, 31, 23, 59, 59, 500_000, tzinfo=timezone.utc)
    assert isinstance(decide_for_eng(book, budgets, last_second), Plan)  # not_after is inclusive
    code, reason = _denial(decide_for_eng(book, budgets, datetime(2026, 4, 1, tzinfo=timezone.utc)))
    assert code == "MANDATE_INACTIVE" and "expired" in reason


def test_a_mandate_valid_through_the_last_second_of_the_year_9999(budgets: Budgets) -> None:
    # Its exclusive end (year 10000) is past what a datetime holds: the latest datetime stands in.
    book = MandateBook()
    book.submit(_mandate(valid_until="9999-12-31T23:59:59Z"), budgets, NOW)
    state = book.mandate_states(budgets)["eng-month"]
    assert state.valid_until == datetime.max.replace(tzinfo=timezone.utc)
    assert state.problem(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)) is None
    assert isinstance(decide_for_eng(book, budgets, NOW), Plan)
    again = MandateBook()  # a live mandate that ends so late still blocks a second chain
    again.submit(_mandate(valid_until="9999-12-31T23:59:59Z"), budgets, NOW)
    assert _refused(again, _mandate(nonce=2), budgets).code == CONFLICT


def test_a_mandate_that_is_not_yet_valid(budgets: Budgets) -> None:
    book = MandateBook()
    book.submit(_mandate(valid_from="2026-04-01T00:00:00Z"), budgets, NOW)  # scheduled: accepted
    code, reason = _denial(decide_for_eng(book, budgets, NOW))
    assert code == "MANDATE_INACTIVE" and "not yet valid" in reason
    assert isinstance(decide_for_eng(book, budgets, datetime(2026, 4, 1, tzinfo=timezone.utc)), Plan)


def test_the_owner_revokes_a_mandate(budgets: Budgets) -> None:
    book = MandateBook()
    digest = book.submit(_mandate(), budgets, NOW).digest
    accepted = book.submit(sign_revocation(digest, "reorg", OWNER_KEY, now=NOW), budgets, NOW)
    assert accepted.kind == "revocation" and accepted.budget_id == "eng-month"
    assert accepted.summary["reason"] == "reorg"
    code, reason = _denial(decide_for_eng(book, budgets, NOW))
    assert code == "MANDATE_INACTIVE" and "revoked" in reason


def test_a_stranger_cannot_revoke(budgets: Budgets) -> None:
    book = MandateBook()
    digest = book.submit(_mandate(), budgets, NOW).digest
    error = _refused(book, sign_revocation(digest, "mine now", STRANGER_KEY, now=NOW), budgets)
    assert error.code == SIGNATURE_INVALID
    assert _refused(book, sign_revocation("0x" + "12" * 32, "x", OWNER_KEY, now=NOW), budgets).code == UNKNOWN_MANDATE
    assert isinstance(decide_for_eng(book, budgets, NOW), Plan)


def test_a_revision_supersedes_the_previous_mandate(budgets: Budgets) -> None:
    book = MandateBook()
    first = book.submit(_mandate(), budgets, NOW).digest
    second = book.submit(_mandate(cap_usd="3000.00", previous=first), budgets, NOW).digest
    states = book.mandate_states(budgets)
    assert states["eng-month"].digest == second
    old = book.state_of(first, budgets)
    assert old is not None and old.superseded and old.problem(NOW) == "superseded"
    # The revision's cap is what the owner now authorises; the budget is clamped to it.
    (eng,) = [b for b in book.effective_budgets(budgets) if b.id == "eng-month"]
    assert eng.cap_nanos == 3000 * USD


def test_revision_chains_cannot_fork(budgets: Budgets) -> None:
    book = MandateBook()
    first = book.submit(_mandate(), budgets, NOW).digest
    book.submit(_mandate(nonce=2, previous=first), budgets, NOW)
    error = _refused(book, _mandate(nonce=3, previous=first), budgets)
    assert error.code == CONFLICT and "name the latest revision" in str(error)
    error = _refused(book, _mandate(nonce=4), budgets)  # a second chain beside a live mandate
    assert error.code == CONFLICT and error.field == "proof.message.previous"
    assert _refused(book, _mandate(nonce=5, previous="0x" + "34" * 32), budgets).code == UNKNOWN_MANDATE


def test_after_a_revocation_a_new_chain_may_start(budgets: Budgets) -> None:
    book = MandateBook()
    first = book.submit(_mandate(), budgets, NOW).digest
    book.submit(sign_revocation(first, "replace", OWNER_KEY, now=NOW), budgets, NOW)
    fresh = book.submit(_mandate(nonce=2), budgets, NOW).digest
    assert book.mandate_states(budgets)["eng-month"].digest == fresh
    assert isinstance(decide_for_eng(book, budgets, NOW), Plan)


def test_a_new_owner_invalidates_the_old_owners_mandate(budgets: Budgets, stranger_key: str) -> None:
    book = MandateBook()
    book.submit(_mandate(), budgets, NOW)
    moved = {**budgets, "eng-month": replace(budgets["eng-month"], owner=address_of(stranger_key))}
    assert book.mandate_states(moved)["eng-month"].signature_ok is False
    code, _ = _denial(decide_for_eng(book, moved, NOW))
    assert code == "SIGNATURE_INVALID"
    # The new owner re-signs, naming the old mandate: the budget is active again.
    old = book.mandate_states(moved)["eng-month"].digest
    book.submit(_mandate(stranger_key, previous=old), moved, NOW)
    assert isinstance(decide_for_eng(book, moved, NOW), Plan)


def test_a_mandate_cap_above_the_config_does_not_raise_it(budgets: Budgets) -> None:
    book = MandateBook()
    book.submit(_mandate(cap_usd="9000"), budgets, NOW)
    (eng,) = [b for b in book.effective_budgets(budgets) if b.id == "eng-month"]
    assert eng.cap_nanos == 5000 * USD


def test_the_owner_overrides_a_budget(budgets: Budgets, owner: str) -> None:
    book = MandateBook()
    book.submit(_mandate(), budgets, NOW)
    accepted = book.submit(sign_override(override_spec(), OWNER_KEY, now=NOW), budgets, NOW)
    assert accepted.kind == "override" and accepted.summary["extra_usd"] == "250.00"
    (override,) = book.overrides(budgets, NOW)
    assert (override.budget_id, override.extra_nanos, override.signer) == ("eng-month", 250 * USD, owner.lower())
    plan = decide_for_eng(book, budgets, NOW)
    assert isinstance(plan, Plan) and plan.charges[0].cap_nanos == 5250 * USD
    after = datetime(2026, 3, 21, tzinfo=timezone.utc)  # windowEnd is exclusive
    assert book.overrides(budgets, after) == ()


def test_nobody_else_can_raise_a_budget(budgets: Budgets) -> None:
    book = MandateBook()
    error = _refused(book, sign_override(override_spec(), STRANGER_KEY, now=NOW), budgets)
    assert error.code == SIGNATURE_INVALID and "only the owner of budget eng-month" in str(error)
    assert book.overrides(budgets) == ()


def test_override_windows_are_bounded(budgets: Budgets) -> None:
    book = MandateBook()
    ended = sign_override(override_spec(window_start="2026-03-01T00:00:00Z", window_end="2026-03-02T00:00:00Z"),
                          OWNER_KEY, now=NOW)
    assert _refused(book, ended, budgets).code == MANDATE_INACTIVE
    long = sign_override(override_spec(window_end="2028-01-01T00:00:00Z"), OWNER_KEY, now=NOW)
    assert _refused(book, long, budgets).code == MISMATCH


def test_rebuilding_from_stored_documents_gives_the_same_answers(budgets: Budgets) -> None:
    book = MandateBook()
    first = book.submit(_mandate(), budgets, NOW).digest
    second = book.submit(_mandate(nonce=2, previous=first), budgets, NOW).digest
    book.submit(sign_override(override_spec(), OWNER_KEY, now=NOW), budgets, NOW)
    bot = book.submit(_mandate(budget="bot-hourly", scope="workflow:support-bot", period="hour", cap_usd="5"),
                      budgets, NOW).digest
    book.submit(sign_revocation(bot, "retired", OWNER_KEY, now=NOW), budgets, NOW)
    stored = [document for _, _, document in book.documents()]
    for order in (stored, list(reversed(stored))):  # the store returns objects in any order
        rebuilt = MandateBook()
        assert rebuilt.load(order) == []
        assert rebuilt.mandate_states(budgets) == book.mandate_states(budgets)
        assert rebuilt.mandate_states(budgets)["eng-month"].digest == second
        assert rebuilt.mandate_states(budgets)["bot-hourly"].revoked
        assert rebuilt.overrides(budgets) == book.overrides(budgets)


def test_a_tampered_stored_document_is_skipped_and_reported(budgets: Budgets) -> None:
    book = MandateBook()
    document = _mandate()
    book.submit(document, budgets, NOW)
    document["content"]["constraints"][0]["max"] = "50000.00"  # edited in the store
    rebuilt = MandateBook()
    problems = rebuilt.load([document])
    assert len(problems) == 1 and "SIGNATURE_INVALID" in problems[0]
    assert rebuilt.mandate_states(budgets) == {}


def test_documents_are_verified_once(budgets: Budgets, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(book_module, "_VERIFIED", {})  # forget what earlier tests verified
    calls: list[object] = []
    real = book_module.verify_document
    monkeypatch.setattr(book_module, "verify_document", lambda *a: calls.append(a) or real(*a))
    book = MandateBook()
    document = _mandate()
    book.submit(document, budgets, NOW)
    assert len(calls) == 1
    book.load([document])  # a reload of what the book holds
    MandateBook().load([document])  # a rebuild from the store after a policy change
    book.submit(document, budgets, NOW)  # a retried submission
    for _ in range(3):  # building policies
        book.mandate_states(budgets), book.overrides(budgets), book.effective_budgets(budgets)
    assert len(calls) == 1
    book.submit(_mandate(nonce=9, previous=document["proof"]["digest"]), budgets, NOW)
    assert len(calls) == 2


def test_a_submitted_document_cannot_be_changed_by_its_caller(budgets: Budgets) -> None:
    book = MandateBook()
    document = _mandate()
    book.submit(document, budgets, NOW)
    document["content"]["constraints"][0]["max"] = "50000.00"
    (_, _, held), = book.documents()
    assert held["content"]["constraints"][0]["max"] == "5000.00"


def test_presented_digest_lookup(budgets: Budgets) -> None:
    book = MandateBook()
    digest = book.submit(_mandate(), budgets, NOW).digest
    state = book.state_of("0x" + digest[2:].upper(), budgets)  # hex case does not matter
    assert state is not None and state.budget_id == "eng-month"
    assert book.state_of("0x" + "56" * 32, budgets) is None


def test_timezones_do_not_matter(budgets: Budgets) -> None:
    book = MandateBook()
    book.submit(_mandate(valid_until="2026-03-31T23:59:59-05:00"), budgets, NOW)
    state = book.mandate_states(budgets)["eng-month"]
    assert state.valid_until == datetime(2026, 4, 1, 5, 0, tzinfo=timezone.utc)
    assert state.problem(NOW + timedelta(days=17)) == "expired"
