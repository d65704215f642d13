"""The `/metrics` exposition, re-exported for the web edge (the collectors live in `p402.ops.metrics`)."""

from __future__ import annotations

from p402.ops.metrics import CONTENT_TYPE_LATEST, Metrics

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]
