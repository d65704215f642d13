"""The ports the pipeline talks through: the budget store and the providers.

Concrete adapters live in `p402.stores` and `p402.providers`; `p402.wiring` is
the only place that picks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator, Callable, Mapping, Protocol, Sequence

from p402.core.decision import Decision, Plan
from p402.core.policy import CounterKey

__all__ = [
    "KeyRecord",
    "HoldInfo",
    "LedgerFilter",
    "LedgerEvent",
    "BudgetStore",
    "Usage",
    "Call",
    "Reply",
    "Provider",
    "EntryBuilder",
    "aclose",
]

# Builds the ledger body of a reservation's decision once the decision is known.
EntryBuilder = Callable[[Decision, str | None], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A virtual API key as the gateway needs it (never the secret itself)."""

    id: str
    tenant: str
    owner_kind: str  # employee | department | workflow
    owner_id: str
    department: str = ""
    employee: str = ""
    workflow: str = ""
    revoked: bool = False
    created_at: str = ""
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class HoldInfo:
    """A live reservation."""

    id: str
    event_id: str
    amount_nanos: int
    keys: tuple[CounterKey, ...]
    expires_at: float
    # What the hold kept of its decision: the attribution, model and provider ("" when absent;
    # p402.stores.layout.hold_context), so an expiry row can say whose request it was.
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    deny_code: str | None = None
    scope_kind: str | None = None
    scope_id: str | None = None
    since: str | None = None  # ISO timestamp, inclusive
    kind: str | None = None
    limit: int = 100
    before_seq: int | None = None


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    seq: int
    body: Mapping[str, Any]
    hash: str
    prev_hash: str


class BudgetStore(Protocol):
    """Balances, holds, the ledger and the policy objects, behind one port.

    Every method that changes balances also appends its ledger row in the same
    transaction: a balance never moves without its record.
    """

    async def reserve(self, plan: Plan, decide: Callable[[Plan, Mapping[CounterKey, tuple[int, int]]], Decision],
                      entry: EntryBuilder, lease_s: float, now: datetime) -> tuple[Decision, str | None]:
        """Read the plan's balances, decide, and on allow reserve on all of them, atomically."""
        ...

    async def settle(self, hold_id: str, cost_nanos: int, entry: dict[str, Any]) -> bool:
        """Replace a hold by its actual cost (0 releases it). False if the hold is gone."""
        ...

    async def record(self, entry: dict[str, Any]) -> int:
        """Append one ledger row (denials, policy changes). Returns its seq."""
        ...

    async def expire_holds(self, now: datetime, make_entry: Callable[[HoldInfo], dict[str, Any]] | None = None) -> int:
        """Settle every hold whose lease ran out at its reserved amount, flagged orphaned;
        `make_entry` builds each one's ledger row from what the hold kept."""
        ...

    async def find_key(self, secret_hash: str) -> KeyRecord | None: ...

    async def write_out(self) -> int:
        """Bring any table that lags the ledger (balances, holds, spend) up to date; how many counters it wrote."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable if the store cannot be reached."""
        ...


@dataclass(slots=True)
class Usage:
    """What the provider reports it billed. Filled in as a reply is read."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reported: bool = False  # the provider's own usage report was seen
    provider_cost_usd: str | None = None  # e.g. OpenRouter's own accounting


@dataclass(slots=True)
class Call:
    """One upstream call, in the client's wire format (`route`)."""

    route: str  # "chat" | "embeddings" | "messages"
    body: dict[str, Any]
    stream: bool
    upstream_model: str
    client_wants_usage: bool = False
    timeout_s: float = 600.0
    input_tokens_bound: int = 0  # our upper bound of the prompt, for providers that report no input usage


@dataclass(slots=True)
class Reply:
    """A provider's answer, in the client's wire format.

    Exactly one of `body` and `chunks` is set. `usage` is complete once `body`
    is set or `chunks` is exhausted.
    """

    status: int
    content_type: str = "application/json"
    body: bytes | None = None
    chunks: AsyncIterator[bytes] | None = None
    usage: Usage = field(default_factory=Usage)
    headers: Sequence[tuple[str, str]] = ()


class Provider(Protocol):
    """One provider adapter: translation, wire format, usage, error mapping."""

    name: str
    routes: frozenset[str]  # the client formats it can serve

    async def send(self, call: Call) -> Reply:
        """Call the provider. Raises UpstreamError for transport failures."""
        ...

    async def close(self) -> None: ...


async def aclose(stream: object) -> None:
    """Close an async iterator (a reply's chunks, a translated stream) if it can be closed."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
