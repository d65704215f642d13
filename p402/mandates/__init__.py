"""Mandates, overrides and identities (SPEC §6): EIP-712 signed budget authorisations.

- `identity`: secp256k1 keys, addresses, ERC-8004 registration files, key files.
- `eip712`: the typed data (`BudgetMandate`, `MandateRevocation`, `BudgetOverride`), signing, recovery.
- `content`: a mandate's AP2 open-payment-mandate content and what p402 reads from it.
- `documents`: the signed JSON document envelope; parse, build, verify.
- `signing`: spec -> signed document, and verify -> (ok, reason), for the CLI.
- `book`: `MandateBook`, verified once, producing `MandateState` and `Override` values for a policy.

Imports point down only: p402.core and p402.errors, never stores or web.
"""

from p402.mandates.book import Accepted, MandateBook
from p402.mandates.documents import Verified, verify_document
from p402.mandates.eip712 import DEFAULT_CHAIN_ID, ZERO_DIGEST
from p402.mandates.errors import MandateRejected
from p402.mandates.identity import load_key, new_identity, save_key
from p402.mandates.signing import sign_mandate, sign_override, sign_revocation, verify

__all__ = [
    "Accepted",
    "MandateBook",
    "Verified",
    "verify_document",
    "DEFAULT_CHAIN_ID",
    "ZERO_DIGEST",
    "MandateRejected",
    "load_key",
    "new_identity",
    "save_key",
    "sign_mandate",
    "sign_override",
    "sign_revocation",
    "verify",
]
