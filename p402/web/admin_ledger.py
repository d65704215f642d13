"""Admin routes that read: spend reports, ledger events with explanations and proofs,
checkpoints, consistency proofs and exports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from p402.core.decision import DENY_CODES
from p402.core.periods import PERIODS
from p402.core.scopes import parse_scope
from p402.errors import NotFound
from p402.ops.ledger import EXPORT_FORMATS, checkpoint_info, consistency, export_lines, inclusion
from p402.ops.spend import spend_report
from p402.pipeline.ports import LedgerFilter
from p402.pipeline.records import iso
from p402.prove.checkpoints import latest_checkpoint
from p402.prove.explain import explain
from p402.web.admin_http import ApiError

__all__ = ["LedgerRoutes", "MAX_EVENTS_PAGE"]

MAX_EVENTS_PAGE = 1000


class LedgerRoutes:
    """Handlers `(request, role) -> JSON` for the reading half of the admin API."""

    def __init__(self, runtime: Any) -> None:
        self.runtime, self.store = runtime, runtime.store

    async def spend(self, request: Request, role: str) -> Any:
        q = request.query_params
        group_by = q.get("group_by", "department")
        period = q.get("period", "month")
        if group_by not in ("department", "employee", "project", "customer", "feature", "workflow", "key", "model"):
            raise ApiError(400, f"group_by: {group_by!r} is not department, employee, project, customer, feature, "
                                f"workflow, key or model", "invalid_request", "group_by")
        if period not in PERIODS or period == "request":
            raise ApiError(400, f"period: {period!r} is not hour, day, week, month, quarter, year or total",
                           "invalid_request", "period")
        return await spend_report(self.store, self.runtime.policies.current, group_by, period, self.runtime.clock())

    async def events(self, request: Request, role: str) -> Any:
        q = request.query_params
        deny_code = q.get("deny_code") or None
        if deny_code is not None and deny_code not in DENY_CODES:
            raise ApiError(400, f"deny_code: {deny_code!r} is not one of {', '.join(DENY_CODES)}", "invalid_request",
                           "deny_code")
        scope_kind = scope_id = None
        if q.get("scope"):
            try:
                s = parse_scope(q["scope"])
            except ValueError as exc:
                raise ApiError(400, f"scope: {exc}", "invalid_request", "scope") from None
            scope_kind, scope_id = s.kind, s.id
        since = q.get("since") or None
        if since is not None:
            try:
                since = iso(datetime.fromisoformat(since.replace("Z", "+00:00")))  # as ledger rows write `ts`
            except (ValueError, OverflowError):
                raise ApiError(400, "since: must be an ISO 8601 time such as 2026-12-01T00:00:00Z", "invalid_request",
                               "since") from None
        limit = _integer(q, "limit", None)
        limit = 100 if limit is None else limit
        before = _integer(q, "before", None)
        if before is not None and not 1 <= before <= 2**63 - 1:
            raise ApiError(400, "before: must be a ledger seq (a positive integer)", "invalid_request", "before")
        if not 1 <= limit <= MAX_EVENTS_PAGE:
            raise ApiError(400, f"limit: must be between 1 and {MAX_EVENTS_PAGE}", "invalid_request", "limit")
        if scope_kind == "tenant" and scope_id != self.runtime.config.tenant:
            return {"data": [], "next_before": None}  # a store holds one tenant's rows: none are another's
        rows = await self.store.events(LedgerFilter(deny_code=deny_code, scope_kind=scope_kind, scope_id=scope_id,
                                               since=since, kind=q.get("kind") or None, limit=limit,
                                               before_seq=before))
        return {"data": [{**r.body, "hash": r.hash} for r in rows],
                "next_before": rows[-1].seq if len(rows) == limit else None}

    async def event(self, request: Request, role: str) -> Any:
        ident = request.path_params["event_id"]
        rows = await self.store.event(ident)
        if not rows:
            raise NotFound(f"event {ident} is not in the ledger")
        out = []
        for r in rows:
            out.append({**r.body, "hash": r.hash, "prev_hash": r.prev_hash,
                        "explanation": explain(r.body), "proof": await inclusion(self.store, r.seq)})
        return {"event_id": ident, "explanation": "\n".join(o["explanation"] for o in out), "rows": out}

    async def checkpoint(self, request: Request, role: str) -> Any:
        return await checkpoint_info(self.store, self.runtime.signer)

    async def consistent(self, request: Request, role: str) -> Any:
        try:
            old, new = int(request.query_params["from"]), int(request.query_params["to"])
        except (KeyError, ValueError):
            raise ApiError(400, "from and to must be the tree sizes (row counts) of two checkpoints",
                           "invalid_request", "from") from None
        proof = await consistency(self.store, old, new)
        if proof is None:
            raise NotFound(f"no pair of checkpoints with tree sizes {old} and {new} (from <= to)")
        return proof

    async def export(self, request: Request, role: str) -> Any:
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in EXPORT_FORMATS:
            raise ApiError(400, f"format: {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}", "invalid_request", "format")
        if role not in ("admin", "finance"):
            raise ApiError(403, f"role {role} may not export the ledger", "forbidden")
        sealed = await latest_checkpoint(self.store)
        media = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
        name = {"jsonl": "p402-ledger.jsonl", "csv": "p402-ledger.csv", "focus": "p402-ledger-focus.csv"}[fmt]
        # A sync generator: Starlette runs it in a worker thread, on the export's own connection.
        sqlite = self.runtime.config.store.startswith("sqlite:///")
        lines = export_lines(self.runtime.config, fmt, sealed, chain=None if sqlite else self.store.chain)
        return StreamingResponse(lines, media_type=media,
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _integer(q: Any, name: str, default: int | None) -> int | None:
    """An integer query parameter, or a 400 naming it."""
    text = q.get(name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f"{name}: must be an integer", "invalid_request", name) from None
