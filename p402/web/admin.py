"""The admin API (`/admin/v1/...`): budgets, keys, spend, ledger. Bearer admin tokens with roles.

Roles: `admin` (everything), `finance` (budgets, overrides, ledger, exports),
`viewer` (read only). Errors use the OpenAI-style envelope and name the field.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from p402.config import parse_budget
from p402.core.decision import DENY_CODES
from p402.core.ids import new_id
from p402.core.money import format_usd
from p402.core.periods import PERIODS, window_for
from p402.core.scopes import ATTRIBUTION_ID_RE, parse_scope
from p402.errors import ConfigError, Conflict, NotFound, StoreUnavailable
from p402.mandates.errors import MandateRejected
from p402.ops.apply import key_record, new_secret
from p402.ops.ledger import EXPORT_FORMATS, checkpoint_info, consistency, export_lines, inclusion
from p402.ops.mandates import REJECTION_STATUS, submit_document
from p402.prove.checkpoints import latest_checkpoint
from p402.prove.explain import explain
from p402.ops.policy_cache import budget_to_dict
from p402.ops.spend import spend_report
from p402.pipeline.auth import hash_secret
from p402.pipeline.ports import LedgerFilter
from p402.pipeline.records import policy_entry
from p402.web.openapi import openapi_document

__all__ = ["admin_app", "ApiError", "json_response", "MAX_EVENTS_PAGE"]

MAX_EVENTS_PAGE = 1000
_WRITE = {"budgets": ("admin", "finance"), "keys": ("admin",), "overrides": ("admin", "finance"),
          "mandates": ("admin",)}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(e: ApiError) -> Response:
    return json_response({"error": {"message": e.message, "type": "admin_error", "param": e.param, "code": e.code}},
                         e.status)


def role_of(runtime: Any, request: Request, allow_query: bool = False) -> str:
    """The caller's role, from `Authorization: Bearer <admin token>` (constant-time compare).

    Only the dashboard (`allow_query`) also takes `?token=`: a browser's EventSource
    cannot send headers. The admin API never reads tokens from URLs, which end up
    in proxies' and servers' access logs.
    """
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not token and allow_query:
        token = request.query_params.get("token", "")
    if not token:
        raise ApiError(401, "admin token required: send Authorization: Bearer <token>", "unauthenticated")
    role = None
    for candidate, r in runtime.config.admin_tokens:
        if hmac.compare_digest(candidate.encode(), token.encode()):
            role = str(r)
    if role is None:
        raise ApiError(401, "unknown admin token", "unauthenticated")
    return role


def endpoint(runtime: Any, area: str | None,
             fn: Callable[[Request, str], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: authenticate, enforce the role for writes, map errors to 4xx/503."""
    async def handle(request: Request) -> Response:
        try:
            role = role_of(runtime, request)
            if request.method != "GET" and area is not None and role not in _WRITE[area]:
                raise ApiError(403, f"role {role} may not change {area}", "forbidden")
            result = await fn(request, role)
            return result if isinstance(result, Response) else json_response(result)
        except ApiError as e:
            return _error(e)
        except ConfigError as e:
            # Payloads are validated as "body": error.param names the field without that prefix.
            param = e.path.removeprefix("body.") if e.path and e.path != "body" else None
            return _error(ApiError(400, str(e), "invalid_request", param))
        except NotFound as e:
            return _error(ApiError(404, str(e), "not_found"))
        except Conflict as e:
            return _error(ApiError(409, str(e), "conflict"))
        except StoreUnavailable as e:
            return _error(ApiError(503, f"the store cannot be reached: {e}", "POLICY_UNAVAILABLE"))
    return handle


async def body_of(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_request")
    return data


def admin_app(runtime: Any) -> Starlette:
    store, tenant = runtime.store, runtime.config.tenant

    async def change(kind: str, ident: str, body: dict[str, Any] | None, before: Any, action: str, role: str) -> None:
        now = runtime.clock()
        entry = policy_entry(new_id("evt", now), now, tenant, action, kind, ident, f"admin:{role}", before, body)
        await store.change_objects([(kind, ident, body)], [entry])
        await runtime.refresh_policy()

    async def budget_status(b: dict[str, Any]) -> dict[str, Any]:
        budget = parse_budget(b, f"budget {b['id']}")
        if budget.period == "request":
            return {**b, "window": None}
        window = window_for(budget.period, runtime.clock(), runtime.policies.current.timezone)
        rows = await store.counters_of(budget.id, window.key)
        settled, reserved = sum(r[1] for r in rows), sum(r[2] for r in rows)
        cap = runtime.policies.current.cap_of(budget, runtime.clock())
        out = {**b, "window": {"start": window.start.isoformat(), "end": window.end.isoformat() if window.end else None},
               "settled_usd": format_usd(settled, 4), "reserved_usd": format_usd(reserved, 4),
               "effective_cap_usd": format_usd(cap)}
        if not budget.per:
            out["remaining_usd"] = format_usd(max(cap - settled - reserved, 0), 4)
        return out

    async def list_budgets(request: Request, role: str) -> Any:
        budgets = await store.objects("budget")
        return {"data": [await budget_status(b) for b in budgets.values()]}

    async def create_budget(request: Request, role: str) -> Any:
        data = await body_of(request)
        budget = parse_budget(data, "body")
        if budget.id in await store.objects("budget"):
            raise ApiError(409, f"budget {budget.id} exists; PATCH /admin/v1/budgets/{budget.id} changes it", "conflict", "id")
        body = budget_to_dict(budget)
        await change("budget", budget.id, body, None, "create", role)
        return json_response(await budget_status(body), 201)

    async def get_budget(request: Request, role: str) -> Any:
        ident = request.path_params["id"]
        b = (await store.objects("budget")).get(ident)
        if b is None:
            raise NotFound(f"budget {ident} does not exist")
        return await budget_status(b)

    async def patch_budget(request: Request, role: str) -> Any:
        ident = request.path_params["id"]
        before = (await store.objects("budget")).get(ident)
        if before is None:
            raise NotFound(f"budget {ident} does not exist")
        data = await body_of(request)
        if "id" in data and data["id"] != ident:
            raise ApiError(400, "id: a budget's id cannot change", "invalid_request", "id")
        after = budget_to_dict(parse_budget({**before, **data}, "body"))
        if after != before:
            await change("budget", ident, after, before, "update", role)
        return await budget_status(after)

    async def delete_budget(request: Request, role: str) -> Any:
        ident = request.path_params["id"]
        before = (await store.objects("budget")).get(ident)
        if before is None:
            raise NotFound(f"budget {ident} does not exist")
        await change("budget", ident, None, before, "delete", role)
        return {"id": ident, "deleted": True}

    async def list_keys(request: Request, role: str) -> Any:
        return {"data": [{"id": k.id, "owner": f"{k.owner_kind}:{k.owner_id}", "department": k.department or None,
                          "employee": k.employee or None, "workflow": k.workflow or None, "revoked": k.revoked,
                          "created_at": k.created_at} for k in await store.list_keys()]}

    async def create_key(request: Request, role: str) -> Any:
        data = await body_of(request)
        owners = [o for o in ("employee", "department", "workflow") if o in data]
        if len(owners) != 1:
            raise ApiError(400, "name exactly one owner: employee, department or workflow", "invalid_request", "employee")
        kind = owners[0]
        owner = data[kind]
        if not isinstance(owner, str) or not ATTRIBUTION_ID_RE.fullmatch(owner):
            raise ApiError(400, f"{kind}: must be an id matching [A-Za-z0-9._:-]{{1,128}}", "invalid_request", kind)
        employees = await store.objects("employee")
        if kind == "employee" and owner not in employees:
            raise ApiError(400, f"employee: {owner!r} is not a known employee", "invalid_request", "employee")
        if kind == "department" and owner not in await store.objects("department"):
            raise ApiError(400, f"department: {owner!r} is not a known department", "invalid_request", "department")
        now = runtime.clock()
        ident = data.get("id") or new_id("key", now).lower()
        if not isinstance(ident, str) or not ATTRIBUTION_ID_RE.fullmatch(ident):
            raise ApiError(400, "id: must match [A-Za-z0-9._:-]{1,128}", "invalid_request", "id")
        if any(k.id == ident for k in await store.list_keys()):
            raise ApiError(409, f"key {ident} exists", "conflict", "id")
        record = key_record(tenant, employees, ident, kind, owner, now)
        secret = new_secret()
        entry = policy_entry(new_id("evt", now), now, tenant, "create", "key", ident, f"admin:{role}", None,
                             {"owner": f"{kind}:{owner}"})
        await store.put_key(record, hash_secret(secret), entry)
        await runtime.refresh_policy()
        return json_response({"id": ident, "secret": secret, "owner": f"{kind}:{owner}",
                              "department": record.department or None, "employee": record.employee or None,
                              "workflow": record.workflow or None,
                              "note": "the secret is shown once; p402 keeps only its hash"}, 201)

    async def revoke_key(request: Request, role: str) -> Any:
        ident = request.path_params["id"]
        now = runtime.clock()
        # before/after say what changed, as every policy row does (the key itself is not deleted).
        entry = policy_entry(new_id("evt", now), now, tenant, "revoke", "key", ident, f"admin:{role}",
                             {"revoked": False}, {"revoked": True})
        await store.revoke_key(ident, entry)
        runtime.keys.invalidate()
        await runtime.refresh_policy()
        return {"id": ident, "revoked": True}

    async def spend(request: Request, role: str) -> Any:
        q = request.query_params
        group_by = q.get("group_by", "department")
        period = q.get("period", "month")
        if group_by not in ("department", "employee", "project", "customer", "feature", "workflow", "key", "model"):
            raise ApiError(400, f"group_by: {group_by!r} is not department, employee, project, customer, feature, "
                                f"workflow, key or model", "invalid_request", "group_by")
        if period not in PERIODS or period == "request":
            raise ApiError(400, f"period: {period!r} is not hour, day, week, month, quarter, year or total",
                           "invalid_request", "period")
        return await spend_report(store, runtime.policies.current, group_by, period, runtime.clock())

    async def events(request: Request, role: str) -> Any:
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
                parsed = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise ApiError(400, "since: must be an ISO 8601 time such as 2026-12-01T00:00:00Z", "invalid_request",
                               "since") from None
            since = parsed.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        try:
            limit = int(q.get("limit", "100"))
            before = int(q["before"]) if q.get("before") else None
        except ValueError:
            raise ApiError(400, "limit and before must be integers", "invalid_request", "limit") from None
        if not 1 <= limit <= MAX_EVENTS_PAGE:
            raise ApiError(400, f"limit: must be between 1 and {MAX_EVENTS_PAGE}", "invalid_request", "limit")
        rows = await store.events(LedgerFilter(deny_code=deny_code, scope_kind=scope_kind, scope_id=scope_id,
                                               since=since, kind=q.get("kind") or None, limit=limit,
                                               before_seq=before))
        return {"data": [{**r.body, "hash": r.hash} for r in rows],
                "next_before": rows[-1].seq if len(rows) == limit else None}

    async def event(request: Request, role: str) -> Any:
        ident = request.path_params["event_id"]
        rows = await store.event(ident)
        if not rows:
            raise NotFound(f"event {ident} is not in the ledger")
        out = []
        for r in rows:
            out.append({**r.body, "hash": r.hash, "prev_hash": r.prev_hash,
                        "explanation": explain(r.body), "proof": await inclusion(store, r.seq)})
        return {"event_id": ident, "explanation": "\n".join(o["explanation"] for o in out), "rows": out}

    async def checkpoint(request: Request, role: str) -> Any:
        return await checkpoint_info(store, runtime.signer)

    async def consistent(request: Request, role: str) -> Any:
        try:
            old, new = int(request.query_params["from"]), int(request.query_params["to"])
        except (KeyError, ValueError):
            raise ApiError(400, "from and to must be the tree sizes (row counts) of two checkpoints",
                           "invalid_request", "from") from None
        proof = await consistency(store, old, new)
        if proof is None:
            raise NotFound(f"no pair of checkpoints with tree sizes {old} and {new} (from <= to)")
        return proof

    async def export(request: Request, role: str) -> Any:
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in EXPORT_FORMATS:
            raise ApiError(400, f"format: {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}", "invalid_request", "format")
        if role not in ("admin", "finance"):
            raise ApiError(403, f"role {role} may not export the ledger", "forbidden")
        if not runtime.config.store.startswith("sqlite:///"):
            raise ApiError(400, "HTTP exports are served for SQLite stores; run `p402 ledger export` for PostgreSQL",
                           "invalid_request", "format")
        sealed = await latest_checkpoint(store)
        media = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
        name = f"p402-ledger.{'jsonl' if fmt == 'jsonl' else 'csv'}"
        # A sync generator: Starlette runs it in a worker thread, on the export's own connection.
        return StreamingResponse(export_lines(runtime.config, fmt, sealed), media_type=media,
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def take(request: Request, role: str, kind: str) -> Any:
        document = await body_of(request)
        try:
            accepted = await submit_document(store, runtime.policies.current, document, kind, f"admin:{role}",
                                             runtime.clock())
        except MandateRejected as e:
            raise ApiError(REJECTION_STATUS.get(e.code, 400), str(e), e.code, e.field) from None
        await runtime.refresh_policy()
        return json_response({**accepted.summary, "new": accepted.new}, 201 if accepted.new else 200)

    async def post_mandate(request: Request, role: str) -> Any:
        return await take(request, role, "mandate")

    async def post_override(request: Request, role: str) -> Any:
        return await take(request, role, "override")

    async def revoke_mandate(request: Request, role: str) -> Any:
        digest = request.path_params["digest"].lower()
        document = await body_of(request)
        proof = document.get("proof")
        message = proof.get("message") if isinstance(proof, dict) else None
        named = message.get("mandate") if isinstance(message, dict) else None
        if not isinstance(named, str) or named.lower() != digest:
            raise ApiError(400, f"proof.message.mandate must name the mandate in the path ({digest})",
                           "invalid_request", "proof.message.mandate")
        return await take(request, role, "revocation")

    async def openapi(request: Request, role: str) -> Any:
        return openapi_document()

    routes = [
        Route("/budgets", endpoint(runtime, "budgets", list_budgets), methods=["GET"]),
        Route("/budgets", endpoint(runtime, "budgets", create_budget), methods=["POST"]),
        Route("/budgets/{id}", endpoint(runtime, "budgets", get_budget), methods=["GET"]),
        Route("/budgets/{id}", endpoint(runtime, "budgets", patch_budget), methods=["PATCH"]),
        Route("/budgets/{id}", endpoint(runtime, "budgets", delete_budget), methods=["DELETE"]),
        Route("/keys", endpoint(runtime, "keys", list_keys), methods=["GET"]),
        Route("/keys", endpoint(runtime, "keys", create_key), methods=["POST"]),
        Route("/keys/{id}/revoke", endpoint(runtime, "keys", revoke_key), methods=["POST"]),
        Route("/spend", endpoint(runtime, None, spend), methods=["GET"]),
        Route("/ledger/events", endpoint(runtime, None, events), methods=["GET"]),
        Route("/ledger/events/{event_id}", endpoint(runtime, None, event), methods=["GET"]),
        Route("/ledger/checkpoint", endpoint(runtime, None, checkpoint), methods=["GET"]),
        Route("/ledger/consistency", endpoint(runtime, None, consistent), methods=["GET"]),
        Route("/ledger/export", endpoint(runtime, None, export), methods=["GET"]),
        Route("/mandates", endpoint(runtime, "mandates", post_mandate), methods=["POST"]),
        Route("/mandates/{digest}/revoke", endpoint(runtime, "mandates", revoke_mandate), methods=["POST"]),
        Route("/overrides", endpoint(runtime, "overrides", post_override), methods=["POST"]),
        Route("/openapi.json", endpoint(runtime, None, openapi), methods=["GET"]),
    ]
    return Starlette(routes=routes)

