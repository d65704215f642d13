"""EIP-712 typed data: the digest is standard and stable, signatures round-trip, high-s is refused."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from mandate_helpers import OWNER_KEY, SECP256K1_N

from p402.mandates import eip712
from p402.mandates.errors import INVALID_DOCUMENT, SIGNATURE_INVALID, MandateRejected
from p402.mandates.identity import address_of

MESSAGE = {
    "budgetId": "eng-month", "scope": "department:eng", "capUsd": "5000.00", "period": "month",
    "validFrom": 1767225600, "validUntil": 1798761599, "contentHash": "0x" + "ab" * 32,
    "previous": eip712.ZERO_DIGEST, "nonce": 7,
}
# A valid message of every primary type, to change one field of.
MESSAGES: dict[str, dict[str, object]] = {
    "BudgetMandate": MESSAGE,
    "MandateRevocation": {"mandate": "0x" + "cd" * 32, "reason": "retired", "ts": 1767225600},
    "BudgetOverride": {"budgetId": "eng-month", "extraUsd": "250.00", "windowStart": 1767225600,
                       "windowEnd": 1767830400, "nonce": 7},
}
TIME_FIELDS_OF = [(primary, name) for primary, fields in eip712.TYPES.items() for name, kind in fields
                  if kind == "uint64"]
# Computed once and frozen: if this changes, every mandate ever signed stops verifying.
GOLDEN_DIGEST = "0xadd0e4e3aa66f38b4bbaf0410e082bc51de14230d74470db935c0a26902902b1"


def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def _by_hand(message: dict[str, object], chain_id: int) -> str:
    """EIP-712 encoding written out from the EIP, independent of eth-account."""
    domain_type = keccak(b"EIP712Domain(string name,string version,uint256 chainId)")
    domain = keccak(domain_type + keccak(b"p402") + keccak(b"1") + _word(chain_id))
    type_hash = keccak(b"BudgetMandate(string budgetId,string scope,string capUsd,string period,uint64 validFrom,"
                       b"uint64 validUntil,bytes32 contentHash,bytes32 previous,uint256 nonce)")
    encoded = type_hash
    for name in ("budgetId", "scope", "capUsd", "period"):
        encoded += keccak(str(message[name]).encode())
    encoded += _word(int(message["validFrom"])) + _word(int(message["validUntil"]))  # type: ignore[call-overload]
    encoded += bytes.fromhex(str(message["contentHash"])[2:]) + bytes.fromhex(str(message["previous"])[2:])
    encoded += _word(int(message["nonce"]))  # type: ignore[call-overload]
    return "0x" + keccak(b"\x19\x01" + domain + keccak(encoded)).hex()


def test_digest_is_the_standard_eip712_encoding() -> None:
    assert eip712.digest_of("BudgetMandate", MESSAGE) == _by_hand(MESSAGE, 1)
    assert eip712.digest_of("BudgetMandate", MESSAGE, chain_id=8453) == _by_hand(MESSAGE, 8453)


def test_digest_is_stable() -> None:
    assert eip712.digest_of("BudgetMandate", MESSAGE) == GOLDEN_DIGEST
    # The chain id is part of the domain: the same message on another chain is another document.
    assert eip712.digest_of("BudgetMandate", MESSAGE, chain_id=11155111) != GOLDEN_DIGEST


def test_sign_and_recover_round_trip() -> None:
    signature, digest = eip712.sign_typed("BudgetMandate", MESSAGE, OWNER_KEY)
    assert digest == GOLDEN_DIGEST
    assert eip712.recover_signer("BudgetMandate", MESSAGE, signature) == (address_of(OWNER_KEY), digest)


def test_our_typed_data_is_what_wallets_sign() -> None:
    # A wallet (here eth-account's own typed-data signer) given our typed data
    # produces a signature we accept, over the same digest.
    typed = eip712.typed_data("BudgetMandate", MESSAGE)
    signed = Account.sign_typed_data(OWNER_KEY, full_message=typed)
    assert "0x" + signed.message_hash.hex() == GOLDEN_DIGEST
    signer, _ = eip712.recover_signer("BudgetMandate", MESSAGE, "0x" + signed.signature.hex())
    assert signer == address_of(OWNER_KEY)


def test_signatures_we_make_are_low_s() -> None:
    for nonce in range(40):
        signature, _ = eip712.sign_typed("BudgetMandate", {**MESSAGE, "nonce": nonce}, OWNER_KEY)
        assert int(signature[66:130], 16) <= SECP256K1_N // 2


def _high_s(signature: str) -> str:
    raw = bytes.fromhex(signature[2:])
    s, v = int.from_bytes(raw[32:64], "big"), raw[64]
    return "0x" + (raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])).hex()  # 27 <-> 28


def test_high_s_signature_is_refused_with_a_clear_reason() -> None:
    signature, digest = eip712.sign_typed("BudgetMandate", MESSAGE, OWNER_KEY)
    flipped = _high_s(signature)
    # The flipped signature is mathematically valid: eth-account alone recovers the owner from it.
    signable = encode_typed_data(full_message=eip712.typed_data("BudgetMandate", MESSAGE))
    assert Account.recover_message(signable, signature=bytes.fromhex(flipped[2:])) == address_of(OWNER_KEY)
    with pytest.raises(MandateRejected) as caught:
        eip712.recover_signer("BudgetMandate", MESSAGE, flipped)
    assert caught.value.code == SIGNATURE_INVALID
    assert "high-s" in str(caught.value) and caught.value.field == "proof.signature"


def test_bare_recovery_id_is_accepted() -> None:
    signature, _ = eip712.sign_typed("BudgetMandate", MESSAGE, OWNER_KEY)
    raw = bytes.fromhex(signature[2:])
    bare = "0x" + (raw[:64] + bytes([raw[64] - 27])).hex()
    assert eip712.recover_signer("BudgetMandate", MESSAGE, bare)[0] == address_of(OWNER_KEY)


@pytest.mark.parametrize("signature, words", [
    ("0x1234", "65 bytes"),
    ("0x" + "11" * 64 + "1d", "v must be"),
    ("0x" + "00" * 32 + "11" * 32 + "1b", "out of range"),
])
def test_malformed_signatures_are_refused(signature: str, words: str) -> None:
    with pytest.raises(MandateRejected) as caught:
        eip712.recover_signer("BudgetMandate", MESSAGE, signature)
    assert caught.value.code == SIGNATURE_INVALID and words in str(caught.value)


@pytest.mark.parametrize("change, field, words", [
    ({"nonce": -1}, "proof.message.nonce", "out of range"),
    ({"validFrom": 1 << 64}, "proof.message.validFrom", "out of range"),
    ({"validFrom": True}, "proof.message.validFrom", "non-negative integer"),
    ({"contentHash": "0x12"}, "proof.message.contentHash", "64 hex digits"),
    ({"capUsd": 5000}, "proof.message.capUsd", "must be a string"),
    ({"extra": 1}, "proof.message", "no field 'extra'"),
])
def test_message_fields_are_checked_by_name(change: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(MandateRejected) as caught:
        eip712.check_message("BudgetMandate", {**MESSAGE, **change})
    assert caught.value.code == INVALID_DOCUMENT
    assert caught.value.field == field and words in str(caught.value)


def test_missing_field_is_named() -> None:
    message = dict(MESSAGE)
    del message["previous"]
    with pytest.raises(MandateRejected, match="proof.message.previous: is missing"):
        eip712.check_message("BudgetMandate", message)


def test_every_uint64_field_is_a_bounded_time() -> None:
    # A uint64 added to the types without joining TIME_FIELDS would escape the bound below.
    assert {name for _, name in TIME_FIELDS_OF} == eip712.TIME_FIELDS
    assert eip712.MAX_TIME_S == int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp())


@pytest.mark.parametrize("primary, name", TIME_FIELDS_OF)
def test_times_end_with_the_year_9999(primary: str, name: str) -> None:
    latest = {**MESSAGES[primary], name: eip712.MAX_TIME_S}
    assert eip712.check_message(primary, latest)[name] == eip712.MAX_TIME_S
    for too_late in (eip712.MAX_TIME_S + 1, 99999999999999, (1 << 64) - 1):  # all inside uint64
        with pytest.raises(MandateRejected) as caught:
            eip712.check_message(primary, {**latest, name: too_late})
        assert caught.value.code == INVALID_DOCUMENT and caught.value.field == f"proof.message.{name}"
        assert "after 9999-12-31T23:59:59Z" in str(caught.value)
