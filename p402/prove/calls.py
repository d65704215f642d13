"""Calls out of ledger rows: each settlement joined with the decision it settles.

A settle, release or expire row names its decision's event_id in `ref`; the
attribution, model and token bounds live on the decision. The reports (CSV,
FOCUS, what-if) want both at once, so this walks the rows in order and keeps the
allowed decisions that are still open, keyed by event_id. That map is bounded
(`max_open`): a decision never settled (its gateway crashed and expiry never ran)
is evicted oldest-first, and its late settlement is then reported with only
what its own row says.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import orjson

from p402.core.ledger import ChainRow

__all__ = ["ATTRIBUTION_FIELDS", "CALL_FIELDS", "SETTLEMENT_KINDS", "Call", "calls", "Progress", "DEFAULT_MAX_OPEN",
           "PROGRESS_EVERY"]

ATTRIBUTION_FIELDS = ("tenant", "department", "employee", "key", "customer", "project", "feature", "workflow")
# Decision fields a settlement inherits when its own row leaves them out.
CALL_FIELDS = ATTRIBUTION_FIELDS + ("model", "provider", "input_tokens", "max_tokens", "estimate_usd",
                                    "policy_version", "route", "max_tokens_set", "completions")
SETTLEMENT_KINDS = ("settle", "release", "expire")
DEFAULT_MAX_OPEN = 500_000
PROGRESS_EVERY = 10_000  # rows between progress callbacks

# progress(rows_done, rows_total_or_None)
Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True, slots=True)
class Call:
    """One decision or settlement row, with the decision it belongs to (for settlements)."""

    seq: int
    body: Mapping[str, Any]
    decision: Mapping[str, Any] | None  # the settled decision (None for decisions and orphans)

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    def get(self, name: str) -> Any:
        """A field from the row, else from its decision (empty values fall through)."""
        value = self.body.get(name)
        if value in (None, "") and self.decision is not None:
            return self.decision.get(name)
        return value


def calls(rows: Iterable[ChainRow], max_open: int = DEFAULT_MAX_OPEN, progress: Progress | None = None,
          total: int | None = None) -> Iterator[Call]:
    """Decision and settlement rows in ledger order, settlements joined to their decisions."""
    open_: OrderedDict[str, dict[str, Any]] = OrderedDict()
    done = 0
    for row in rows:
        done += 1
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done, total)
        body = orjson.loads(row.body)
        kind = body.get("kind")
        if kind == "decision":
            if body.get("outcome") == "allow" and isinstance(body.get("event_id"), str):
                open_[body["event_id"]] = {k: body[k] for k in CALL_FIELDS + ("ts", "event_id") if k in body}
                if len(open_) > max_open:
                    open_.popitem(last=False)
            yield Call(row.seq, body, None)
        elif kind in SETTLEMENT_KINDS:
            ref = body.get("ref")
            yield Call(row.seq, body, open_.pop(ref, None) if isinstance(ref, str) else None)
    if progress is not None:
        progress(done, total)
