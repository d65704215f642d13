"""Scopes (what spend is attributed to) and a request's attribution.

A scope is written `kind:id`, e.g. `department:eng`. A request's `Attribution`
names at most one id per kind; the key fixes tenant, department, employee (and
workflow for a workflow key); headers may only add the other kinds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SCOPE_KINDS", "HEADER_KINDS", "Scope", "Attribution", "ATTRIBUTION_ID_RE", "ADDRESS_RE", "parse_scope"]

SCOPE_KINDS = ("tenant", "department", "employee", "customer", "project", "feature", "workflow", "key")
# The kinds a request may add through X-P402-* headers (SPEC §4).
HEADER_KINDS = ("customer", "project", "feature", "workflow")
ATTRIBUTION_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# An owner's identity: an Ethereum address (ERC-8004), as budget owners sign with.
ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")


@dataclass(frozen=True, slots=True)
class Scope:
    """One thing spend is attributed to."""

    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


def parse_scope(text: str) -> Scope:
    """Parse `kind:id`; raises ValueError naming what is wrong."""
    kind, sep, ident = text.partition(":")
    if not sep or not ident:
        raise ValueError(f"scope {text!r} must be written kind:id, e.g. department:eng")
    if kind not in SCOPE_KINDS:
        raise ValueError(f"scope kind {kind!r} is not one of {', '.join(SCOPE_KINDS)}")
    if not ATTRIBUTION_ID_RE.fullmatch(ident):
        raise ValueError(f"scope id {ident!r} must match [A-Za-z0-9._:-]{{1,128}}")
    return Scope(kind, ident)


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who a request is for. Empty string means 'not named'."""

    tenant: str
    key: str
    department: str = ""
    employee: str = ""
    workflow: str = ""
    customer: str = ""
    project: str = ""
    feature: str = ""

    def get(self, kind: str) -> str:
        return str(getattr(self, kind))

    def covers(self, scope: Scope) -> bool:
        """True when the request falls under `scope`."""
        return self.get(scope.kind) == scope.id

    def as_dict(self) -> dict[str, str]:
        return {k: self.get(k) for k in SCOPE_KINDS if self.get(k)}
