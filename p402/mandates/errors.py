"""Why a mandate, revocation or override document was refused.

A refused document is the caller's mistake (an admin payload or a CLI input),
so it is a `ConfigError`: the web layer already maps that to a 4xx. `code`
says which kind of refusal it is, so the admin API and the CLI can show the
contract's deny code (`SIGNATURE_INVALID`, `MANDATE_INACTIVE`) where one fits,
and `field` names the part of the document that is wrong.
"""

from __future__ import annotations

from p402.errors import ConfigError

__all__ = [
    "MandateRejected",
    "INVALID_DOCUMENT",
    "SIGNATURE_INVALID",
    "MANDATE_INACTIVE",
    "UNKNOWN_BUDGET",
    "UNKNOWN_MANDATE",
    "MISMATCH",
    "CONFLICT",
]

# The document is malformed: a field is missing, of the wrong type or out of range.
INVALID_DOCUMENT = "INVALID_DOCUMENT"
# The proof does not verify: bad or high-s signature, wrong signer, content that
# does not match what was signed, or a signer who is not the budget's owner.
SIGNATURE_INVALID = "SIGNATURE_INVALID"
# The document verifies but could never be active (e.g. it is already expired).
MANDATE_INACTIVE = "MANDATE_INACTIVE"
# The document names a budget the gateway does not have.
UNKNOWN_BUDGET = "UNKNOWN_BUDGET"
# A revocation or revision names a mandate the book does not hold.
UNKNOWN_MANDATE = "UNKNOWN_MANDATE"
# The document verifies but authorises something else than the budget is (scope, period, tenant).
MISMATCH = "MISMATCH"
# The document would fork a mandate's revision chain.
CONFLICT = "CONFLICT"


class MandateRejected(ConfigError):
    """A document was refused; `code` is one of this module's constants, `field` the JSON path at fault."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.code = code
        self.field = field
        self.detail = message
