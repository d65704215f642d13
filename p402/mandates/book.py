"""The mandate book: every verified mandate, revocation and override, and what they mean for budgets.

Documents are verified once per process (the result is memoised by the
document's bytes) and kept by digest; building a policy snapshot from the book
does no cryptography at all. The book is pure and in memory: the caller
persists each accepted document as a store object (kind `Accepted.kind`, id
`Accepted.digest`, body `Accepted.document`) and rebuilds from them with
`load`, or in one call with `policy_parts` / `states_from_objects`.

What the book derives is a function of the documents it holds and the
budgets it is given, so every replica that loads the same objects with the
same config reaches the same answer:

- a mandate's **owner check** is done against the budget's *current* owner, so
  changing a budget's owner turns its old mandates into `signature_ok=False`
  (SIGNATURE_INVALID, recovery `resign_mandate`) without touching them;
- a mandate is **superseded** once a verified revision names it as `previous`
  (immediately: the new revision's own validity window then governs);
- a mandate is **revoked** by a verified `MandateRevocation` signed by the
  mandate's signer or the budget's current owner;
- a budget's mandate is the head of its revision chain; `submit` refuses forks
  and a second chain while a live mandate exists;
- an override counts only while its signer is the budget's current owner.

`submit` is strict (it raises `MandateRejected` with a code and the field at
fault); `load` is lenient (it reports and skips what no longer verifies), since
a store written by an earlier version or tampered with must not stop a start.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import orjson

from p402.core.money import format_usd, parse_usd
from p402.core.policy import Budget, MandateState, Override
from p402.core.scopes import parse_scope
from p402.mandates.content import format_instant
from p402.mandates.documents import Verified, parse_document, verify_document
from p402.mandates.eip712 import DEFAULT_CHAIN_ID, MAX_TIME_S, ZERO_DIGEST
from p402.mandates.errors import (CONFLICT, MANDATE_INACTIVE, MISMATCH, SIGNATURE_INVALID, UNKNOWN_BUDGET,
                                  UNKNOWN_MANDATE, MandateRejected)

__all__ = ["MAX_OVERRIDE_WINDOW_S", "Accepted", "MandateBook", "PolicyParts", "policy_parts", "states_from_objects"]

# An override is a time-boxed raise; a raise for longer than this is a new
# budget or a new mandate, not an override.
MAX_OVERRIDE_WINDOW_S = 366 * 24 * 3600
# Upper bound on documents a book holds: each is verified and kept in memory.
MAX_DOCUMENTS = 100_000


@dataclass(frozen=True, slots=True)
class Accepted:
    """A document the book took: persist `document` as object (`kind`, `digest`); `summary` is for the ledger."""

    kind: str  # "mandate" | "revocation" | "override"
    digest: str
    signer: str
    budget_id: str
    document: Mapping[str, Any]
    summary: Mapping[str, str]
    new: bool = True  # False when the book already held this exact document


def _utc(unix_s: int) -> datetime:
    return datetime.fromtimestamp(unix_s, timezone.utc)


# The latest instant a datetime holds: 9999-12-31T23:59:59.999999Z.
_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def _after(unix_s: int) -> datetime:
    """The exclusive end of a window whose last second is `unix_s` (a mandate's inclusive `not_after`).

    Through `MAX_TIME_S` (9999-12-31T23:59:59Z) it would be year 10000, which no datetime
    holds: the latest datetime, a microsecond earlier, stands in, as no clock reads that late.
    """
    return _LATEST if unix_s >= MAX_TIME_S else _utc(unix_s + 1)


def _fingerprint(document: Mapping[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


# Verification is a pure function of (chain id, document bytes), so its results
# are memoised process-wide: rebuilding a book from the store on every policy
# change re-reads documents but never re-verifies one it has seen. Bounded;
# when full it is emptied, which costs one re-verification per document.
_VERIFIED: dict[tuple[int, bytes], Verified] = {}


def _verify_once(document: Mapping[str, Any], chain_id: int) -> Verified:
    key = (chain_id, _fingerprint(document))
    hit = _VERIFIED.get(key)
    if hit is None:
        hit = verify_document(document, chain_id)
        if len(_VERIFIED) >= MAX_DOCUMENTS:
            _VERIFIED.clear()
        _VERIFIED[key] = hit
    return hit


class MandateBook:
    """Verified mandates, revocations and overrides, by digest. Not thread-safe: one writer (the event loop)."""

    def __init__(self, chain_id: int = DEFAULT_CHAIN_ID, tenant: str | None = None,
                 max_override_window_s: int = MAX_OVERRIDE_WINDOW_S) -> None:
        self.chain_id = chain_id
        self.tenant = tenant
        self.max_override_window_s = max_override_window_s
        self._mandates: dict[str, Verified] = {}
        self._by_budget: dict[str, list[Verified]] = {}  # budget id -> its mandates, so lookups stay per budget
        self._revocations: dict[str, Verified] = {}
        self._overrides: dict[str, Verified] = {}
        self._digests: set[str] = set()
        self._superseded_by: dict[str, str] = {}
        self._revoked_by: dict[str, list[Verified]] = {}  # mandate digest -> revocations naming it

    # -- taking documents in ------------------------------------------------------------------

    def submit(self, document: bytes | str | Mapping[str, Any], budgets: Mapping[str, Budget],
               now: datetime) -> Accepted:
        """Verify a document and apply the rules for taking it; raise `MandateRejected` if refused."""
        v = _verify_once(parse_document(document), self.chain_id)
        existing = self._mandates.get(v.digest) or self._revocations.get(v.digest) or self._overrides.get(v.digest)
        if existing is not None:
            # The same signed message with its signature encoded differently (v as 0/1): one identity.
            return self._accepted(existing, new=False)
        if v.kind == "mandate":
            self._admit_mandate(v, budgets, now)
        elif v.kind == "revocation":
            self._admit_revocation(v, budgets)
        else:
            self._admit_override(v, budgets, now)
        self._add(v)
        return self._accepted(v, new=True)

    def load(self, documents: Iterable[bytes | str | Mapping[str, Any]]) -> list[str]:
        """Rebuild from stored documents (any order); return one line per document skipped and why.

        A document verified before (by any book in this process) is not verified again.
        """
        problems: list[str] = []
        pending: list[Verified] = []
        for raw in documents:
            try:
                pending.append(_verify_once(parse_document(raw), self.chain_id))
            except MandateRejected as exc:
                problems.append(f"skipped a stored document: {exc.code}: {exc}")
        # Mandates first, so revocations and revisions find what they name.
        for v in sorted(pending, key=lambda item: item.kind != "mandate"):
            if v.kind == "revocation" and v.message["mandate"] not in self._mandates:
                problems.append(f"skipped revocation {v.digest}: it names mandate {v.message['mandate']}, "
                                f"which is not in the store")
                continue
            self._add(v)
        return problems

    def _add(self, v: Verified) -> None:
        if len(self._digests) >= MAX_DOCUMENTS and v.digest not in self._digests:
            raise MandateRejected(CONFLICT, f"the book holds {MAX_DOCUMENTS} documents, its limit")
        self._digests.add(v.digest)
        if v.kind == "mandate":
            if v.digest not in self._mandates:
                self._by_budget.setdefault(v.message["budgetId"], []).append(v)
            self._mandates[v.digest] = v
            previous = v.message["previous"]
            if previous != ZERO_DIGEST:
                # Recorded even when the prior revision is not (yet) loaded, so load order does not matter.
                self._superseded_by.setdefault(previous, v.digest)
        elif v.kind == "revocation":
            self._revocations[v.digest] = v
            self._revoked_by.setdefault(v.message["mandate"], []).append(v)
        else:
            self._overrides[v.digest] = v

    # -- the rules for new documents ------------------------------------------------------------

    def _budget_of(self, budget_id: str, budgets: Mapping[str, Budget], signer: str) -> Budget:
        budget = budgets.get(budget_id)
        if budget is None:
            raise MandateRejected(UNKNOWN_BUDGET, f"there is no budget {budget_id!r}", "proof.message.budgetId")
        if not budget.owner:
            raise MandateRejected(SIGNATURE_INVALID, f"budget {budget_id} has no owner, so nobody can sign for it; "
                                  "give its department an owner address in the config", "proof.signer")
        if signer != budget.owner.lower():
            raise MandateRejected(SIGNATURE_INVALID, f"signed by {signer}, but only the owner of budget "
                                  f"{budget_id} ({budget.owner.lower()}) may sign for it", "proof.signer")
        return budget

    def _admit_mandate(self, v: Verified, budgets: Mapping[str, Budget], now: datetime) -> None:
        terms = v.terms
        assert terms is not None  # verify_document sets terms for every mandate
        budget = self._budget_of(terms.budget_id, budgets, v.signer)
        if terms.scope != str(budget.scope):
            raise MandateRejected(MISMATCH, f"the mandate is for {terms.scope} but budget {budget.id} is on "
                                  f"{budget.scope}", "content.p402.scope")
        if terms.period != budget.period:
            raise MandateRejected(MISMATCH, f"the mandate is per {terms.period} but budget {budget.id} is per "
                                  f"{budget.period}", "content.p402.period")
        if self.tenant and terms.tenant and terms.tenant != self.tenant:
            raise MandateRejected(MISMATCH, f"the mandate is for tenant {terms.tenant}, this gateway serves "
                                  f"{self.tenant}", "content.p402.tenant")
        if now >= _after(terms.valid_until):
            raise MandateRejected(MANDATE_INACTIVE, f"the mandate expired at {format_instant(terms.valid_until)}",
                                  "payment.execution_date.not_after")
        previous = v.message["previous"]
        if previous == ZERO_DIGEST:
            live = self._head(budget, now, live_only=True)
            if live is not None:
                raise MandateRejected(CONFLICT, f"budget {budget.id} already has mandate {live.digest}; sign a "
                                      "revision naming it as previous, or revoke it first", "proof.message.previous")
            return
        prior = self._mandates.get(previous)
        if prior is None:
            raise MandateRejected(UNKNOWN_MANDATE, f"names {previous} as previous, which is not a known mandate",
                                  "proof.message.previous")
        if prior.message["budgetId"] != terms.budget_id:
            raise MandateRejected(MISMATCH, f"previous mandate {previous} is for budget {prior.message['budgetId']}",
                                  "proof.message.previous")
        if previous in self._superseded_by:
            raise MandateRejected(CONFLICT, f"{previous} was already replaced by {self._superseded_by[previous]}; "
                                  "name the latest revision as previous", "proof.message.previous")

    def _admit_revocation(self, v: Verified, budgets: Mapping[str, Budget]) -> None:
        target = self._mandates.get(v.message["mandate"])
        if target is None:
            raise MandateRejected(UNKNOWN_MANDATE, f"there is no mandate {v.message['mandate']}",
                                  "proof.message.mandate")
        if not self._may_revoke(v.signer, target, budgets):
            raise MandateRejected(SIGNATURE_INVALID, f"signed by {v.signer}; only the mandate's signer "
                                  f"({target.signer}) or the budget's owner may revoke it", "proof.signer")

    def _admit_override(self, v: Verified, budgets: Mapping[str, Budget], now: datetime) -> None:
        m = v.message
        self._budget_of(m["budgetId"], budgets, v.signer)
        if now >= _utc(m["windowEnd"]):
            raise MandateRejected(MANDATE_INACTIVE, f"the override window ended at {format_instant(m['windowEnd'])}",
                                  "proof.message.windowEnd")
        if m["windowEnd"] - m["windowStart"] > self.max_override_window_s:
            raise MandateRejected(MISMATCH, f"the window is longer than {self.max_override_window_s // 86400} days; "
                                  "raise the budget itself instead", "proof.message.windowEnd")

    @staticmethod
    def _may_revoke(signer: str, target: Verified, budgets: Mapping[str, Budget]) -> bool:
        budget = budgets.get(target.message["budgetId"])
        owner = budget.owner.lower() if budget is not None and budget.owner else None
        return signer in (target.signer, owner)

    # -- what the documents mean --------------------------------------------------------------

    def _revoked(self, m: Verified, budgets: Mapping[str, Budget]) -> bool:
        return any(self._may_revoke(r.signer, m, budgets) for r in self._revoked_by.get(m.digest, ()))

    def _head(self, budget: Budget, now: datetime | None = None, live_only: bool = False,
              budgets: Mapping[str, Budget] | None = None) -> Verified | None:
        """The current revision of `budget`'s mandate: not superseded, for its scope and period.

        Among several (a new chain after a revocation, or forks loaded from a
        store), prefer one signed by the current owner, then one not revoked,
        then the latest `validFrom`, then the greatest digest: deterministic.
        """
        known = budgets if budgets is not None else {budget.id: budget}
        owner = budget.owner.lower()
        best: tuple[tuple[bool, bool, int, str], Verified] | None = None
        for m in self._by_budget.get(budget.id, ()):
            t = m.terms
            if t is None or m.digest in self._superseded_by:
                continue
            if t.scope != str(budget.scope) or t.period != budget.period:
                continue  # authorises another budget that happened to have this id
            revoked = self._revoked(m, known)
            if live_only and (revoked or m.signer != owner or (now is not None and now >= _after(t.valid_until))):
                continue
            rank = (m.signer == owner, not revoked, t.valid_from, m.digest)
            if best is None or rank > best[0]:
                best = (rank, m)
        return best[1] if best else None

    def _state(self, m: Verified, budgets: Mapping[str, Budget]) -> MandateState:
        t = m.terms
        assert t is not None
        budget = budgets.get(t.budget_id)
        owner = budget.owner.lower() if budget is not None and budget.owner else ""
        # not_after is inclusive to the second; MandateState's valid_until is exclusive.
        return MandateState(digest=m.digest, budget_id=t.budget_id, valid_from=_utc(t.valid_from),
                            valid_until=_after(t.valid_until), signature_ok=m.signer == owner,
                            revoked=self._revoked(m, budgets), superseded=m.digest in self._superseded_by)

    def mandate_states(self, budgets: Mapping[str, Budget]) -> dict[str, MandateState]:
        """`Policy.mandates`: the state of each budget's current mandate, by budget id."""
        out: dict[str, MandateState] = {}
        for budget in budgets.values():
            head = self._head(budget, budgets=budgets)
            if head is not None:
                out[budget.id] = self._state(head, budgets)
        return out

    def state_of(self, digest: str, budgets: Mapping[str, Budget]) -> MandateState | None:
        """The state of one mandate by digest (e.g. one an agent presents in X-P402-Mandate)."""
        m = self._mandates.get(digest.lower())
        return self._state(m, budgets) if m is not None else None

    def mandate_cap_nanos(self, budget: Budget) -> int | None:
        """The cap the budget's current mandate authorises, or None without one."""
        head = self._head(budget)
        return head.terms.cap_nanos if head is not None and head.terms is not None else None

    def effective_budgets(self, budgets: Mapping[str, Budget]) -> tuple[Budget, ...]:
        """The budgets with each `requires_mandate` cap lowered to what its mandate authorises.

        A mandate authorises *up to* its cap; the config may set less. Taking the
        lower of the two means neither the config nor a mandate alone can raise
        what the owner signed for (overrides add on top, and are signed too).
        """
        out = []
        for budget in budgets.values():
            cap = self.mandate_cap_nanos(budget) if budget.requires_mandate else None
            out.append(replace(budget, cap_nanos=min(budget.cap_nanos, cap)) if cap is not None else budget)
        return tuple(out)

    def overrides(self, budgets: Mapping[str, Budget], now: datetime | None = None) -> tuple[Override, ...]:
        """`Policy.overrides`: verified overrides whose signer still owns the budget (ended ones left out)."""
        out = []
        for v in sorted(self._overrides.values(), key=lambda item: item.digest):
            m = v.message
            budget = budgets.get(m["budgetId"])
            if budget is None or not budget.owner or v.signer != budget.owner.lower():
                continue
            if now is not None and now >= _utc(m["windowEnd"]):
                continue
            out.append(Override(budget_id=m["budgetId"], extra_nanos=parse_usd(m["extraUsd"]),
                                starts=_utc(m["windowStart"]), ends=_utc(m["windowEnd"]), signer=v.signer))
        return tuple(out)

    def documents(self) -> list[tuple[str, str, Mapping[str, Any]]]:
        """Everything held, as (kind, digest, document): what the store should contain."""
        held = [*self._mandates.values(), *self._revocations.values(), *self._overrides.values()]
        return [(v.kind, v.digest, v.document) for v in held]

    # -- reporting ------------------------------------------------------------------------------

    def _accepted(self, v: Verified, new: bool) -> Accepted:
        m = v.message
        summary: dict[str, str] = {"kind": v.kind, "digest": v.digest, "signer": v.signer}
        if v.terms is not None:
            t = v.terms
            summary.update(budget_id=t.budget_id, scope=t.scope, period=t.period, cap_usd=format_usd(t.cap_nanos),
                           valid_from=format_instant(t.valid_from), valid_until=format_instant(t.valid_until),
                           previous=m["previous"])
            budget_id = t.budget_id
        elif v.kind == "override":
            summary.update(budget_id=m["budgetId"], extra_usd=format_usd(parse_usd(m["extraUsd"])),
                           window_start=format_instant(m["windowStart"]), window_end=format_instant(m["windowEnd"]))
            budget_id = m["budgetId"]
        else:
            target = self._mandates.get(m["mandate"])
            budget_id = str(target.message["budgetId"]) if target is not None else ""
            summary.update(budget_id=budget_id, mandate=m["mandate"], reason=m["reason"])
        return Accepted(v.kind, v.digest, v.signer, budget_id, v.document, summary, new)



# -- rebuilding from store objects ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyParts:
    """What a `Policy` needs from the mandate documents in the store."""

    budgets: tuple[Budget, ...]  # caps of requires_mandate budgets lowered to their mandate's cap
    mandates: dict[str, MandateState]
    overrides: tuple[Override, ...]
    problems: tuple[str, ...] = field(default=())  # stored documents skipped, one line each, for the log


def _by_id(budgets: Mapping[str, Budget] | Iterable[Budget]) -> dict[str, Budget]:
    return dict(budgets) if isinstance(budgets, Mapping) else {b.id: b for b in budgets}


def policy_parts(mandates: Mapping[str, Any], overrides: Mapping[str, Any],
                 revocations: Mapping[str, Any] | None = None, *,
                 budgets: Mapping[str, Budget] | Iterable[Budget], now: datetime | None = None,
                 chain_id: int = DEFAULT_CHAIN_ID) -> PolicyParts:
    """Build the policy's mandate parts from store objects (`store.objects(kind)`: id -> document).

    A fresh book per call, so a document deleted from the store stops counting;
    verification is memoised, so a refresh costs no cryptography for documents
    seen before.
    """
    by_id = _by_id(budgets)
    book = MandateBook(chain_id=chain_id)
    problems = book.load([*mandates.values(), *(revocations or {}).values(), *overrides.values()])
    return PolicyParts(book.effective_budgets(by_id), book.mandate_states(by_id), book.overrides(by_id, now),
                       tuple(problems))


def states_from_objects(mandates: Mapping[str, Any], overrides: Mapping[str, Any],
                        revocations: Mapping[str, Any] | None = None,
                        budgets: Mapping[str, Budget] | Iterable[Budget] | None = None,
                        now: datetime | None = None) -> tuple[dict[str, MandateState], tuple[Override, ...]]:
    """`Policy.mandates` and `Policy.overrides` from store objects (the hook `PolicyCache` calls).

    Owners live on the budgets, so without `budgets` no signer can be checked:
    then every mandate reports `signature_ok=False` and no override counts
    (fail closed) until the caller passes them.
    """
    if budgets is None:
        book = MandateBook()
        book.load([*mandates.values(), *(revocations or {}).values()])
        signed = [doc["proof"]["message"] for kind, _, doc in book.documents() if kind == "mandate"]
        ownerless = {m["budgetId"]: Budget(m["budgetId"], parse_scope(m["scope"]), 0, m["period"]) for m in signed}
        return book.mandate_states(ownerless), ()
    parts = policy_parts(mandates, overrides, revocations, budgets=budgets, now=now)
    return parts.mandates, parts.overrides
