"""Prometheus metrics (`GET /metrics`): requests, decisions by deny code, spend by department, decision latency.

It lives below the web edge because the composition root (`p402.wiring`) builds it
and imports must only point down; `p402.web.metrics` re-exports it.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from p402.core.money import NANOS_PER_USD

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]

_MAX_CHILDREN = 10_000  # labelled series remembered by Metrics
# Decisions take microseconds; buckets from 10 µs to 1 s.
_DECISION_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 0.1, 1.0)


class Metrics:
    """Implements the pipeline's Telemetry port on a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("p402_requests", "Client requests by route and HTTP status",
                                ("route", "status"), registry=self.registry)
        self.decisions = Counter("p402_decisions", "Budget decisions by outcome and deny code",
                                 ("outcome", "deny_code"), registry=self.registry)
        self.spend = Counter("p402_spend_usd", "Settled spend in USD by department", ("department",),
                             registry=self.registry)
        self.latency = Histogram("p402_decision_seconds", "Time to decide and reserve (the policy decision)",
                                 buckets=_DECISION_BUCKETS, registry=self.registry)
        # Labelled children by (metric, labels): `labels()` validates and locks on every call
        # (~0.6 us each, three per request); the children themselves never change.
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def decision(self, outcome: str, deny_code: str | None, seconds: float) -> None:
        _child(self._children, self.decisions, (outcome, deny_code or "")).inc()
        self.latency.observe(seconds)

    def settled(self, department: str, cost_nanos: int) -> None:
        if cost_nanos:
            # A float here is only an exported gauge of money; the ledger keeps it exact.
            _child(self._children, self.spend, (department or "-",)).inc(cost_nanos / NANOS_PER_USD)

    def request(self, route: str, status: int) -> None:
        _child(self._children, self.requests, (route, str(status))).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _child(cache: dict[tuple[object, tuple[str, ...]], Any], metric: Any, labels: tuple[str, ...]) -> Any:
    key = (metric, labels)
    child = cache.get(key)
    if child is None:
        child = metric.labels(*labels)
        if len(cache) < _MAX_CHILDREN:  # label values are bounded, but never trust that blindly
            cache[key] = child
    return child
