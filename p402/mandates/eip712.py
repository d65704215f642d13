"""The EIP-712 typed data p402 signs, and signing and verifying it.

Three primary types share one domain `{name: "p402", version: "1", chainId}`
(no `verifyingContract`: nothing is on chain; `chainId` defaults to 1 and is
configurable so a test network key cannot be replayed on a production gateway
configured for another chain, and vice versa):

- `BudgetMandate`: a budget owner authorises a budget (cap, period, validity)
  and commits to the full AP2 content through `contentHash`;
- `MandateRevocation`: the owner withdraws a mandate, named by its digest;
- `BudgetOverride`: the owner raises a budget by an extra amount for a window.

Money is a decimal USD *string* (`capUsd`, `extraUsd`) rather than a nano-USD
integer so that a hardware wallet shows the signer "5000.00", not
5000000000000. Times are Unix seconds (`uint64`), at most `MAX_TIME_S`
(9999-12-31T23:59:59Z): a `uint64` reaches far beyond the last year a date
can be written in (and Python's `datetime` holds), and nothing p402 signs
needs a later time.

The identity of every signed document is its EIP-712 digest (0x-hex), which
does not include the signature, so a malleated signature can never create a
second identity. Even so, high-s signatures are refused (as Ethereum does for
transactions since EIP-2): there is exactly one acceptable signature per digest.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils.crypto import keccak  # eth-utils is a declared dependency of eth-account (pinned in the lock)

from p402.mandates.errors import INVALID_DOCUMENT, SIGNATURE_INVALID, MandateRejected

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "DEFAULT_CHAIN_ID",
    "ZERO_DIGEST",
    "SECP256K1_N",
    "MAX_TIME_S",
    "TIME_FIELDS",
    "TYPES",
    "PRIMARY_TYPES",
    "keccak_hex",
    "check_message",
    "typed_data",
    "digest_of",
    "sign_typed",
    "recover_signer",
]

DOMAIN_NAME = "p402"
DOMAIN_VERSION = "1"
DEFAULT_CHAIN_ID = 1
ZERO_DIGEST = "0x" + "00" * 32
# The order of the secp256k1 group; a signature's s must be at most half of it.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
# Bounds on the strings inside typed data: a signer's screen shows them, and
# nothing p402 signs needs more.
MAX_STRING_CHARS = 256

TYPES: dict[str, tuple[tuple[str, str], ...]] = {
    "BudgetMandate": (
        ("budgetId", "string"),
        ("scope", "string"),
        ("capUsd", "string"),
        ("period", "string"),
        ("validFrom", "uint64"),
        ("validUntil", "uint64"),
        ("contentHash", "bytes32"),
        ("previous", "bytes32"),
        ("nonce", "uint256"),
    ),
    "MandateRevocation": (
        ("mandate", "bytes32"),
        ("reason", "string"),
        ("ts", "uint64"),
    ),
    "BudgetOverride": (
        ("budgetId", "string"),
        ("extraUsd", "string"),
        ("windowStart", "uint64"),
        ("windowEnd", "uint64"),
        ("nonce", "uint256"),
    ),
}
PRIMARY_TYPES = tuple(TYPES)
_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
]
_UINT_BITS = {"uint64": 64, "uint256": 256}
# The fields that are times, and the latest time any of them may name:
# 9999-12-31T23:59:59Z, the last second ISO 8601's four-digit year and
# Python's datetime can represent. A later uint64 would be a document nobody
# can read back as a date (nor the gateway turn into one), so it is refused
# as invalid, naming the field, rather than failing on the way.
TIME_FIELDS = frozenset({"validFrom", "validUntil", "ts", "windowStart", "windowEnd"})
MAX_TIME_S = 253402300799
_BYTES32 = re.compile(r"0x[0-9a-fA-F]{64}")
_SIGNATURE = re.compile(r"(0x)?[0-9a-fA-F]{130}")


def keccak_hex(data: bytes) -> str:
    """keccak-256 of `data` as 0x-prefixed lowercase hex."""
    return "0x" + keccak(data).hex()


def check_message(primary: str, message: object, where: str = "proof.message") -> dict[str, Any]:
    """Validate a typed-data message; return it normalised (bytes32 as lowercase 0x-hex).

    Raises `MandateRejected(INVALID_DOCUMENT)` naming the first bad field.
    """
    if primary not in TYPES:
        raise MandateRejected(INVALID_DOCUMENT, f"must be one of {', '.join(PRIMARY_TYPES)}, not {primary!r}",
                              "proof.primaryType")
    if not isinstance(message, Mapping):
        raise MandateRejected(INVALID_DOCUMENT, "must be an object", where)
    fields = TYPES[primary]
    extra = sorted(set(message) - {name for name, _ in fields})
    if extra:
        raise MandateRejected(INVALID_DOCUMENT, f"{primary} has no field {extra[0]!r}", where)
    out: dict[str, Any] = {}
    for name, kind in fields:
        if name not in message:
            raise MandateRejected(INVALID_DOCUMENT, "is missing", f"{where}.{name}")
        out[name] = _check_value(kind, message[name], f"{where}.{name}")
        if name in TIME_FIELDS and out[name] > MAX_TIME_S:
            raise MandateRejected(INVALID_DOCUMENT, f"is after 9999-12-31T23:59:59Z ({MAX_TIME_S}), the latest time "
                                  "p402 accepts", f"{where}.{name}")
    return out


def _check_value(kind: str, value: object, where: str) -> object:
    if kind == "string":
        if not isinstance(value, str):
            raise MandateRejected(INVALID_DOCUMENT, "must be a string", where)
        if len(value) > MAX_STRING_CHARS:
            raise MandateRejected(INVALID_DOCUMENT, f"is longer than {MAX_STRING_CHARS} characters", where)
        return value
    if kind in _UINT_BITS:
        # bool is an int in Python; JSON true is never a number here.
        if isinstance(value, bool) or not isinstance(value, int):
            raise MandateRejected(INVALID_DOCUMENT, "must be a non-negative integer", where)
        if not 0 <= value < (1 << _UINT_BITS[kind]):
            raise MandateRejected(INVALID_DOCUMENT, f"is out of range for {kind}", where)
        return value
    # bytes32
    if not isinstance(value, str) or not _BYTES32.fullmatch(value):
        raise MandateRejected(INVALID_DOCUMENT, "must be 0x followed by 64 hex digits", where)
    return value.lower()


def typed_data(primary: str, message: Mapping[str, Any], chain_id: int = DEFAULT_CHAIN_ID) -> dict[str, Any]:
    """The full typed data as `eth_signTypedData_v4` and hardware wallets take it."""
    return {
        "types": {
            "EIP712Domain": list(_DOMAIN_TYPE),
            primary: [{"name": name, "type": kind} for name, kind in TYPES[primary]],
        },
        "primaryType": primary,
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id},
        "message": dict(message),
    }


def _signable(primary: str, message: Mapping[str, Any], chain_id: int) -> SignableMessage:
    return encode_typed_data(full_message=typed_data(primary, message, chain_id))


def _digest(signable: SignableMessage) -> str:
    # EIP-712: keccak256("\x19\x01" || domainSeparator || hashStruct(message)).
    return keccak_hex(b"\x19" + signable.version + signable.header + signable.body)


def digest_of(primary: str, message: Mapping[str, Any], chain_id: int = DEFAULT_CHAIN_ID) -> str:
    """The EIP-712 digest (0x-hex): the identity of the signed document."""
    return _digest(_signable(primary, check_message(primary, message), chain_id))


def sign_typed(primary: str, message: Mapping[str, Any], private_key: str | bytes,
               chain_id: int = DEFAULT_CHAIN_ID) -> tuple[str, str]:
    """Sign; return (signature as 0x-hex r||s||v with v in {27, 28}, digest).

    libsecp256k1 (behind coincurve, which eth-keys uses when installed) always
    produces low-s signatures, so what we sign passes our own check.
    """
    signable = _signable(primary, check_message(primary, message), chain_id)
    signed = Account.sign_message(signable, private_key)
    return "0x" + bytes(signed.signature).hex(), _digest(signable)


def _split(signature: object) -> tuple[int, int, int]:
    if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
        raise MandateRejected(SIGNATURE_INVALID, "must be 65 bytes as hex (r || s || v)", "proof.signature")
    raw = bytes.fromhex(signature.removeprefix("0x"))
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    if v in (0, 1):  # some wallets return the bare recovery id
        v += 27
    if v not in (27, 28):
        raise MandateRejected(SIGNATURE_INVALID, f"v must be 27 or 28 (or 0 or 1), not {raw[64]}", "proof.signature")
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise MandateRejected(SIGNATURE_INVALID, "r or s is out of range", "proof.signature")
    if s > _HALF_N:
        raise MandateRejected(SIGNATURE_INVALID,
                              "is a high-s signature (s > secp256k1n/2); p402 accepts only the canonical low-s form, "
                              "re-sign with a current wallet or normalise s to n - s and flip v", "proof.signature")
    return r, s, v


def recover_signer(primary: str, message: Mapping[str, Any], signature: object,
                   chain_id: int = DEFAULT_CHAIN_ID) -> tuple[str, str]:
    """Recover who signed `message`; return (checksummed address, digest).

    Refuses malformed and high-s signatures with `MandateRejected(SIGNATURE_INVALID)`.
    A valid signature by someone else recovers *their* address: comparing it
    with the expected signer is the caller's job.
    """
    r, s, v = _split(signature)
    signable = _signable(primary, check_message(primary, message), chain_id)
    try:
        address = Account.recover_message(signable, vrs=(v, r, s))
    except Exception as exc:  # eth-keys raises BadSignature and friends; any failure means "does not verify"
        raise MandateRejected(SIGNATURE_INVALID, f"does not verify ({exc})", "proof.signature") from exc
    return str(address), _digest(signable)
