"""The exception tree of p402. Imports nothing from p402.

Expected rejections (an over-budget request, a denied category) are *values*
(`p402.core.decision.Decision`), never exceptions. Exceptions are for what the
caller cannot continue from::

    P402Error
    ├── ConfigError          the config file or an admin payload is invalid (names file, key, problem)
    ├── StoreError           the budget store failed
    │   └── StoreUnavailable the store cannot be reached: fail closed (503 POLICY_UNAVAILABLE)
    ├── NotFound             an object named by id does not exist
    ├── Conflict             an object with that id exists already / a state change is not allowed
    ├── LedgerCorrupt        the hash chain does not verify (carries the first bad row)
    └── UpstreamError        the provider failed (carries what it billed, if anything)
"""

from __future__ import annotations

__all__ = [
    "P402Error",
    "ConfigError",
    "StoreError",
    "StoreUnavailable",
    "NotFound",
    "Conflict",
    "LedgerCorrupt",
    "UpstreamError",
]


class P402Error(Exception):
    """Base of every p402 exception."""


class ConfigError(P402Error):
    """Invalid configuration; the message names where and what.

    `path` is the key path alone (e.g. `budgets[1].cap_usd`), so the admin API can
    name the offending field in `error.param` without parsing the message.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StoreError(P402Error):
    """The budget store failed in a way that is not the caller's fault."""


class StoreUnavailable(StoreError):
    """The store cannot be reached; callers must fail closed."""


class NotFound(P402Error):
    """An object named by id does not exist."""


class Conflict(P402Error):
    """The object exists already, or the change is not allowed in its state."""


class LedgerCorrupt(P402Error):
    """The ledger's hash chain or a checkpoint does not verify."""

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


class UpstreamError(P402Error):
    """A provider call failed. `maybe_billed`: the request may have reached the provider and been
    served (a timeout, a connection lost after sending, an unreadable 200): the call is then settled
    at its reserved estimate, since what the provider bills for it cannot be known."""

    def __init__(self, message: str, status: int = 502, retryable: bool = False, maybe_billed: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.maybe_billed = maybe_billed
