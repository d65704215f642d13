"""Taking in signed mandates, revocations and overrides (admin API and CLI).

A document is verified once, checked against its budget's owner, stored as a
policy object under its EIP-712 digest, and recorded in the ledger with its
signer. Raising a budget takes the owner's signature; an admin role only lets a
caller hand the document in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from p402.core.ids import new_id
from p402.core.policy import Policy
from p402.mandates.book import Accepted, MandateBook
from p402.mandates.errors import MandateRejected
from p402.pipeline.records import policy_entry

__all__ = ["submit_document", "REJECTION_STATUS", "STORED_KINDS"]

STORED_KINDS = ("mandate", "revocation", "override")
# HTTP status for each reason a document is refused.
REJECTION_STATUS = {"INVALID_DOCUMENT": 400, "MISMATCH": 400, "SIGNATURE_INVALID": 403, "MANDATE_INACTIVE": 409,
                    "UNKNOWN_BUDGET": 404, "UNKNOWN_MANDATE": 404, "CONFLICT": 409}


async def submit_document(store: Any, policy: Policy, document: Any, expected_kind: str, actor: str,
                          now: datetime) -> Accepted:
    """Verify and store one document; raises MandateRejected when it is refused."""
    book = MandateBook()
    stored = []
    for kind in STORED_KINDS:
        stored.extend((await store.objects(kind)).values())
    book.load(stored)
    accepted = book.submit(document, {b.id: b for b in policy.budgets}, now)
    if accepted.kind != expected_kind:
        raise MandateRejected("INVALID_DOCUMENT", f"expected a signed {expected_kind}, got a {accepted.kind}",
                              "proof.primaryType")
    if accepted.new:
        entry = policy_entry(new_id("evt", now), now, policy.tenant, "submit", accepted.kind, accepted.digest, actor,
                             None, dict(accepted.summary))
        entry["signer"] = accepted.signer
        entry["budget_id"] = accepted.budget_id
        await store.change_objects([(accepted.kind, accepted.digest, dict(accepted.document))], [entry])
    return accepted
