"""Signed documents: verify round trip, and every way of changing one after signing is caught and named."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from mandate_helpers import NOW, OWNER_KEY, mandate_spec, override_spec

from p402.mandates.content import content_hash
from p402.mandates.documents import MAX_DOCUMENT_BYTES, make_document, verify_document
from p402.mandates.eip712 import MAX_TIME_S, sign_typed, typed_data
from p402.mandates.errors import INVALID_DOCUMENT, SIGNATURE_INVALID, MandateRejected
from p402.mandates.identity import address_of
from p402.mandates.signing import sign, sign_mandate, sign_override, sign_revocation, unsigned_mandate

OWNER = address_of(OWNER_KEY).lower()


def _mandate() -> dict[str, Any]:
    return sign_mandate(mandate_spec(), OWNER_KEY, now=NOW)


def _rejected(document: object, chain_id: int = 1) -> MandateRejected:
    with pytest.raises(MandateRejected) as caught:
        verify_document(document, chain_id)  # type: ignore[arg-type]
    return caught.value


def test_mandate_round_trip_through_json_bytes() -> None:
    document = _mandate()
    verified = verify_document(orjson.dumps(document))
    assert verified.kind == "mandate" and verified.signer == OWNER
    assert verified.digest == document["proof"]["digest"]
    assert verified.terms is not None
    assert (verified.terms.budget_id, verified.terms.cap_nanos, verified.terms.period) == \
        ("eng-month", 5000 * 10**9, "month")


def test_content_is_an_ap2_open_payment_mandate() -> None:
    content = _mandate()["content"]
    assert content["vct"] == "mandate.payment.open.1"
    kinds = {c["type"]: c for c in content["constraints"]}
    assert kinds["payment.budget"] == {"type": "payment.budget", "max": "5000.00", "currency": "USD"}
    assert kinds["payment.agent_recurrence"]["frequency"] == "MONTHLY"
    assert kinds["payment.execution_date"]["not_after"] == "2026-12-31T23:59:59Z"


def test_the_digest_does_not_depend_on_key_order_or_whitespace() -> None:
    document = _mandate()
    reordered = orjson.loads(orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
    assert verify_document(reordered).digest == document["proof"]["digest"]


def test_tampered_content_is_caught() -> None:
    document = _mandate()
    document["content"]["constraints"][0]["max"] = "50000.00"
    error = _rejected(document)
    assert error.code == SIGNATURE_INVALID and error.field == "content"
    assert "changed after signing" in str(error)


def test_tampered_content_with_a_recomputed_hash_is_caught() -> None:
    document = _mandate()
    document["content"]["constraints"][0]["max"] = "50000.00"
    document["proof"]["message"]["capUsd"] = "50000.00"
    document["proof"]["message"]["contentHash"] = content_hash(document["content"])
    error = _rejected(document)
    assert error.code == SIGNATURE_INVALID and error.field == "proof.digest"


def test_a_forged_signer_is_caught(stranger_key: str) -> None:
    document = _mandate()
    document["proof"]["signer"] = address_of(stranger_key)
    error = _rejected(document)
    assert error.code == SIGNATURE_INVALID and error.field == "proof.signer"
    assert OWNER in str(error).lower()


def test_signing_one_cap_and_showing_another_is_refused() -> None:
    # A signer who builds the message by hand can sign capUsd 9000 over content
    # that shows 5000 (contentHash is honest). The document must not verify.
    content, typed = unsigned_mandate(mandate_spec(), now=NOW)
    message = {**typed["message"], "capUsd": "9000.00"}
    signature, digest = sign_typed("BudgetMandate", message, OWNER_KEY)
    document = make_document(content, "BudgetMandate", message, OWNER, signature, digest)
    error = _rejected(document)
    assert error.code == SIGNATURE_INVALID and error.field == "proof.message.capUsd"
    assert "$9000.00" in str(error) and "$5000.00" in str(error)


@pytest.mark.parametrize("name, value, words", [
    ("validUntil", 1893456000, "not_after"),
    ("period", "day", "content.p402.period"),
    ("scope", "department:sales", "content.p402.scope"),
])
def test_other_enforced_fields_must_match_the_content(name: str, value: object, words: str) -> None:
    content, typed = unsigned_mandate(mandate_spec(), now=NOW)
    message = {**typed["message"], name: value}
    signature, digest = sign_typed("BudgetMandate", message, OWNER_KEY)
    error = _rejected(make_document(content, "BudgetMandate", message, OWNER, signature, digest))
    assert error.code == SIGNATURE_INVALID and error.field == f"proof.message.{name}" and words in str(error)


def test_a_document_signed_for_another_chain_is_refused() -> None:
    error = _rejected(sign_mandate(mandate_spec(), OWNER_KEY, chain_id=8453, now=NOW), chain_id=1)
    assert error.code == SIGNATURE_INVALID and error.field == "proof.chainId"
    assert verify_document(sign_mandate(mandate_spec(), OWNER_KEY, chain_id=8453, now=NOW), 8453).signer == OWNER


def _resign(content: dict[str, Any]) -> dict[str, Any]:
    """Sign `content` as given (bypassing the spec builder) so only content validation can object."""
    _, typed = unsigned_mandate(mandate_spec(), now=NOW)
    typed["message"]["contentHash"] = content_hash(content)
    return sign((content, typed), OWNER_KEY)


@pytest.mark.parametrize("edit, field, words", [
    (lambda c: c["constraints"].append({"type": "payment.amount_range", "currency": "USD", "max": 100}),
     "content.constraints[3]", "does not enforce 'payment.amount_range'"),
    (lambda c: c["constraints"][0].update(max=5000.5), "content.constraints[0].max", "quoted decimal string"),
    (lambda c: c["constraints"][0].update(currency="EUR"), "content.constraints[0].currency", "'USD'"),
    (lambda c: c["constraints"][1].update(frequency="BIWEEKLY"), "content.constraints[1].frequency", "MONTHLY"),
    (lambda c: c["constraints"][2].update(not_before="2026-01-01T00:00:00"), "content.constraints[2].not_before",
     "no timezone"),
    (lambda c: c["constraints"].pop(1), "content.constraints", "payment.agent_recurrence"),
    (lambda c: c.update(payee={"name": "shop"}), "content.payee", "does not enforce"),
    (lambda c: c.update(vct="mandate.payment.1"), "content.vct", "mandate.payment.open.1"),
    (lambda c: c["p402"].pop("budget_id"), "content.p402.budget_id", "non-empty string"),
    (lambda c: c.update(exp=1), "content.exp", "not_after"),
    # Written in year 9999 but, by the offset, a minute past its end in UTC; and before 1970 the same way.
    (lambda c: c["constraints"][2].update(not_after="9999-12-31T23:59:59-00:01"), "content.constraints[2].not_after",
     "after 9999-12-31T23:59:59Z"),
    (lambda c: c["constraints"][2].update(not_before="1970-01-01T00:59:59+01:00"),
     "content.constraints[2].not_before", "before 1970-01-01T00:00:00Z"),
])
def test_content_problems_name_the_field(edit: Any, field: str, words: str) -> None:
    content = copy.deepcopy(_mandate()["content"])
    edit(content)
    error = _rejected(_resign(content))
    assert error.code == INVALID_DOCUMENT
    assert error.field == field and words in str(error)


def test_a_payment_reference_is_accepted_as_a_link() -> None:
    content = copy.deepcopy(_mandate()["content"])
    content["constraints"].append({"type": "payment.reference", "conditional_transaction_id": "abc"})
    assert verify_document(_resign(content)).terms is not None


def test_envelope_problems_are_named() -> None:
    assert _rejected(b"[1, 2]").field == "document"
    assert _rejected(b"{not json").field == "document"
    assert _rejected(b" " * (MAX_DOCUMENT_BYTES + 1)).field == "document"
    assert _rejected({"content": {}}).field == "proof"
    document = _mandate()
    document["proof"]["type"] = "JWS"
    assert _rejected(document).field == "proof.type"
    document = _mandate()
    document["proof"]["primaryType"] = "Mail"
    assert _rejected(document).field == "proof.primaryType"


def test_override_round_trip_and_tamper() -> None:
    document = sign_override(override_spec(), OWNER_KEY, now=NOW)
    verified = verify_document(document)
    assert verified.kind == "override" and verified.signer == OWNER
    assert document["content"]["extra_usd"] == "250.00"
    document["content"]["extra_usd"] = "2500.00"
    error = _rejected(document)
    assert error.code == SIGNATURE_INVALID and error.field == "content.extra_usd"


def test_revocation_round_trip() -> None:
    digest = _mandate()["proof"]["digest"]
    document = sign_revocation(digest, "project cancelled", OWNER_KEY, now=NOW)
    verified = verify_document(document)
    assert verified.kind == "revocation" and verified.message["mandate"] == digest
    document["content"]["reason"] = "nothing"
    assert _rejected(document).field == "content.reason"


def _wallet_signed(document: dict[str, Any], **message: Any) -> dict[str, Any]:
    """`document` with its message changed and signed again as any wallet would sign it (p402's own
    signing refuses times past the year 9999; a wallet signs whatever uint64 it is shown)."""
    proof = document["proof"]
    changed = {**proof["message"], **message}
    signed = Account.sign_message(encode_typed_data(full_message=typed_data(proof["primaryType"], changed)), OWNER_KEY)
    return make_document(document["content"], proof["primaryType"], changed, proof["signer"],
                         "0x" + bytes(signed.signature).hex(), "0x" + bytes(signed.message_hash).hex())


def test_times_through_the_end_of_the_year_9999_verify() -> None:
    mandate = sign_mandate(mandate_spec(valid_until="9999-12-31T23:59:59Z"), OWNER_KEY, now=NOW)
    verified = verify_document(mandate)
    assert verified.terms is not None and verified.terms.valid_until == MAX_TIME_S
    override = sign_override(override_spec(window_start="9999-12-24T23:59:59Z", window_end="9999-12-31T23:59:59Z"),
                             OWNER_KEY, now=NOW)
    assert verify_document(override).message["windowEnd"] == MAX_TIME_S
    assert override["content"]["window_end"] == "9999-12-31T23:59:59Z"
    revocation = _wallet_signed(sign_revocation("0x" + "ab" * 32, "r", OWNER_KEY, now=NOW), ts=MAX_TIME_S)
    revocation["content"]["ts"] = "9999-12-31T23:59:59Z"
    assert verify_document(revocation).message["ts"] == MAX_TIME_S


SIGNED = {"mandate": _mandate, "override": lambda: sign_override(override_spec(), OWNER_KEY, now=NOW),
          "revocation": lambda: sign_revocation("0x" + "ab" * 32, "r", OWNER_KEY, now=NOW)}


@pytest.mark.parametrize("kind, name", [("mandate", "validFrom"), ("mandate", "validUntil"),
                                        ("override", "windowStart"), ("override", "windowEnd"), ("revocation", "ts")])
def test_signed_times_past_the_year_9999_are_invalid_and_named(kind: str, name: str) -> None:
    for too_late in (MAX_TIME_S + 1, 99999999999999, 2**64 - 1):
        error = _rejected(_wallet_signed(SIGNED[kind](), **{name: too_late}))
        assert error.code == INVALID_DOCUMENT and error.field == f"proof.message.{name}"
        assert "after 9999-12-31T23:59:59Z" in str(error)
