"""Signed documents: a mandate, a revocation or an override, as JSON; parse, build and verify.

Every document has the same envelope::

    {"content": {...},                      what the signer approves, human-readable
     "proof": {"type": "EIP712",
               "primaryType": "BudgetMandate" | "MandateRevocation" | "BudgetOverride",
               "chainId": 1,
               "message": {...},            the EIP-712 message that was signed
               "signer": "0x...",           the address that signed it
               "signature": "0x...",        65 bytes r || s || v, low-s
               "digest": "0x..."}}          the EIP-712 digest: the document's identity

For a mandate, `content` is an AP2 open payment mandate (see `content.py`) and
the message commits to it through `contentHash`; the message's enforced fields
(cap, period, validity, budget, scope) must also equal what the content says,
so a signer cannot sign one cap and show another. For a revocation or an
override, `content` is the message in readable form (amounts in USD, times in
ISO 8601) and must say exactly what the message says.

`verify_document` checks shape, consistency, digest and signature, in that
order, and returns a `Verified` value; it knows nothing about budgets or
owners (that is `MandateBook`'s job).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, cast

import orjson

from p402.core.money import MoneyError, format_usd, parse_usd
from p402.mandates.content import MandateTerms, content_hash, format_instant, read_content
from p402.mandates.eip712 import DEFAULT_CHAIN_ID, check_message, recover_signer
from p402.mandates.errors import INVALID_DOCUMENT, SIGNATURE_INVALID, MandateRejected

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "KIND_OF",
    "Verified",
    "parse_document",
    "derived_content",
    "make_document",
    "verify_document",
]

# A mandate is a few hundred bytes; anything near this bound is not one.
MAX_DOCUMENT_BYTES = 64 * 1024
# The store-object kind of each primary type.
KIND_OF = {"BudgetMandate": "mandate", "MandateRevocation": "revocation", "BudgetOverride": "override"}
_PROOF_KEYS = frozenset({"type", "primaryType", "chainId", "message", "signer", "signature", "digest"})


@dataclass(frozen=True, slots=True)
class Verified:
    """A document whose signature verified. `signer` is lowercase; `terms` is set for mandates."""

    kind: str  # "mandate" | "revocation" | "override"
    digest: str
    signer: str
    message: Mapping[str, Any]
    document: Mapping[str, Any]
    terms: MandateTerms | None = None

    @property
    def content(self) -> Mapping[str, Any]:
        content: Mapping[str, Any] = self.document["content"]
        return content


def parse_document(raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """Parse a document from JSON text or a parsed mapping (bounded in size); return a private copy."""
    if isinstance(raw, Mapping):
        # A JSON round trip gives the book its own copy (a caller mutating its
        # dict later cannot change a verified document) and refuses non-JSON values.
        try:
            data = orjson.dumps(raw)
        except TypeError as exc:
            raise MandateRejected(INVALID_DOCUMENT, f"is not JSON-serialisable ({exc})", "document") from None
    else:
        data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_DOCUMENT_BYTES:
        raise MandateRejected(INVALID_DOCUMENT, f"is larger than {MAX_DOCUMENT_BYTES} bytes", "document")
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MandateRejected(INVALID_DOCUMENT, f"is not valid JSON ({exc})", "document") from None
    if not isinstance(parsed, dict):
        raise MandateRejected(INVALID_DOCUMENT, "must be a JSON object {content, proof}", "document")
    return parsed


def derived_content(primary: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """The readable content of a revocation or an override: the message, in USD and ISO 8601."""
    if primary == "MandateRevocation":
        return {"type": "p402.mandate_revocation", "mandate": message["mandate"], "reason": message["reason"],
                "ts": format_instant(message["ts"])}
    if primary == "BudgetOverride":
        return {"type": "p402.budget_override", "budget_id": message["budgetId"],
                "extra_usd": message["extraUsd"], "window_start": format_instant(message["windowStart"]),
                "window_end": format_instant(message["windowEnd"])}
    raise ValueError(f"{primary} content is an AP2 mandate, not derived from its message")


def make_document(content: Mapping[str, Any], primary: str, message: Mapping[str, Any], signer: str,
                  signature: str, digest: str, chain_id: int = DEFAULT_CHAIN_ID) -> dict[str, Any]:
    """Assemble a document from its parts (e.g. a signature made by a hardware wallet)."""
    return {"content": dict(content),
            "proof": {"type": "EIP712", "primaryType": primary, "chainId": chain_id, "message": dict(message),
                      "signer": signer, "signature": signature, "digest": digest}}


def _proof(document: Mapping[str, Any], chain_id: int) -> Mapping[str, Any]:
    proof = document.get("proof")
    if not isinstance(proof, Mapping):
        raise MandateRejected(INVALID_DOCUMENT, "is missing: an object {type, primaryType, chainId, message, "
                              "signer, signature, digest}", "proof")
    unknown = sorted(set(proof) - _PROOF_KEYS)
    if unknown:
        raise MandateRejected(INVALID_DOCUMENT, f"unknown member {unknown[0]!r}", "proof")
    if proof.get("type") != "EIP712":
        raise MandateRejected(INVALID_DOCUMENT, "must be 'EIP712'", "proof.type")
    if proof.get("chainId") != chain_id:
        raise MandateRejected(SIGNATURE_INVALID, f"was signed for chain {proof.get('chainId')!r}; this gateway "
                              f"verifies chain {chain_id}", "proof.chainId")
    for name in ("signer", "signature", "digest"):
        if not isinstance(proof.get(name), str):
            raise MandateRejected(INVALID_DOCUMENT, "must be a 0x-hex string", f"proof.{name}")
    return proof


def _check_mandate_content(content: object, message: Mapping[str, Any]) -> MandateTerms:
    terms = read_content(content)
    actual = content_hash(cast(Mapping[str, Any], content))  # read_content refused anything but a mapping
    if actual != message["contentHash"]:
        raise MandateRejected(SIGNATURE_INVALID, f"the content hashes to {actual} but the signature covers "
                              f"{message['contentHash']}: the content was changed after signing", "content")
    try:
        signed_cap = parse_usd(message["capUsd"])
    except MoneyError as exc:
        raise MandateRejected(INVALID_DOCUMENT, str(exc), "proof.message.capUsd") from None
    # (signed field, what it says, what the content says, where the content says it); money is
    # compared as nanos, so "5000" and "5000.00" agree, and shown as dollars.
    pairs: tuple[tuple[str, object, object, str], ...] = (
        ("budgetId", message["budgetId"], terms.budget_id, "content.p402.budget_id"),
        ("scope", message["scope"], terms.scope, "content.p402.scope"),
        ("period", message["period"], terms.period, "content.p402.period"),
        ("capUsd", signed_cap, terms.cap_nanos, "payment.budget.max"),
        ("validFrom", message["validFrom"], terms.valid_from, "payment.execution_date.not_before"),
        ("validUntil", message["validUntil"], terms.valid_until, "payment.execution_date.not_after"),
    )
    for name, signed, shown, shown_where in pairs:
        if signed != shown:
            if name == "capUsd":
                signed, shown = f"${format_usd(signed_cap)}", f"${format_usd(terms.cap_nanos)}"
            raise MandateRejected(SIGNATURE_INVALID, f"the signed {name} is {signed} but the content's "
                                  f"{shown_where} says {shown}", f"proof.message.{name}")
    return terms


def _check_derived_content(primary: str, content: object, message: Mapping[str, Any]) -> None:
    expected = derived_content(primary, message)
    if not isinstance(content, Mapping):
        raise MandateRejected(INVALID_DOCUMENT, "must be an object", "content")
    for name in sorted(set(expected) | set(content)):
        if content.get(name) != expected.get(name):
            raise MandateRejected(SIGNATURE_INVALID, f"says {content.get(name)!r} but the signed message says "
                                  f"{expected.get(name)!r}", f"content.{name}")
    if primary == "BudgetOverride":
        try:
            if parse_usd(message["extraUsd"]) <= 0:
                raise MandateRejected(INVALID_DOCUMENT, "must be more than zero", "proof.message.extraUsd")
        except MoneyError as exc:
            raise MandateRejected(INVALID_DOCUMENT, str(exc), "proof.message.extraUsd") from None
        if message["windowEnd"] <= message["windowStart"]:
            raise MandateRejected(INVALID_DOCUMENT, "must be after windowStart", "proof.message.windowEnd")


def verify_document(document: bytes | str | Mapping[str, Any], chain_id: int = DEFAULT_CHAIN_ID) -> Verified:
    """Verify a signed document; raise `MandateRejected` naming the first problem.

    Checks, in order: the envelope, the message's types, that the content says
    what the message says (and, for a mandate, hashes to `contentHash`), that
    `proof.digest` is the digest of the message, that the signature is
    well-formed and low-s, and that it recovers to `proof.signer`.
    """
    doc = parse_document(document)
    proof = _proof(doc, chain_id)
    primary = proof.get("primaryType")
    message = check_message(str(primary), proof.get("message"))
    terms = None
    if primary == "BudgetMandate":
        terms = _check_mandate_content(doc.get("content"), message)
    else:
        _check_derived_content(str(primary), doc.get("content"), message)
    signer, digest = recover_signer(str(primary), message, proof["signature"], chain_id)
    if proof["digest"].lower() != digest:
        raise MandateRejected(SIGNATURE_INVALID, f"is {proof['digest']} but the signed message's digest is "
                              f"{digest}: the document was changed after signing", "proof.digest")
    if proof["signer"].lower() != signer.lower():
        raise MandateRejected(SIGNATURE_INVALID, f"the signature was made by {signer}, not by the stated "
                              f"signer {proof['signer']}", "proof.signer")
    return Verified(KIND_OF[str(primary)], digest, signer.lower(), message, doc, terms)
