"""The admin API (`/admin/v1/...`): budgets, keys, mandates, overrides, spend, ledger.

Bearer admin tokens with roles (see `p402.web.admin_http`); the handlers live in
`admin_policy` (what changes policy) and `admin_ledger` (what reads).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from p402.web.admin_http import ApiError, endpoint, http_error, json_response, role_of
from p402.web.admin_ledger import MAX_EVENTS_PAGE, LedgerRoutes
from p402.web.admin_policy import PolicyRoutes
from p402.web.openapi import openapi_document

__all__ = ["admin_app", "ApiError", "json_response", "role_of", "MAX_EVENTS_PAGE"]


def admin_app(runtime: Any) -> Starlette:
    """The admin API as a Starlette app, mounted under /admin/v1."""
    p, l = PolicyRoutes(runtime), LedgerRoutes(runtime)

    async def openapi(request: Request, role: str) -> Any:
        return openapi_document()

    def route(path: str, method: str, area: str | None, fn: Any) -> Route:
        return Route(path, endpoint(runtime, area, fn), methods=[method])

    return Starlette(routes=[
        route("/budgets", "GET", "budgets", p.list_budgets),
        route("/budgets", "POST", "budgets", p.create_budget),
        route("/budgets/{id}", "GET", "budgets", p.get_budget),
        route("/budgets/{id}", "PATCH", "budgets", p.patch_budget),
        route("/budgets/{id}", "DELETE", "budgets", p.delete_budget),
        route("/keys", "GET", "keys", p.list_keys),
        route("/keys", "POST", "keys", p.create_key),
        route("/keys/{id}/revoke", "POST", "keys", p.revoke_key),
        route("/mandates", "POST", "mandates", p.post_mandate),
        route("/mandates/{digest}/revoke", "POST", "mandates", p.revoke_mandate),
        route("/overrides", "POST", "overrides", p.post_override),
        route("/spend", "GET", None, l.spend),
        route("/ledger/events", "GET", None, l.events),
        route("/ledger/events/{event_id}", "GET", None, l.event),
        route("/ledger/checkpoint", "GET", None, l.checkpoint),
        route("/ledger/consistency", "GET", None, l.consistent),
        route("/ledger/export", "GET", None, l.export),
        route("/openapi.json", "GET", None, openapi),
    ], exception_handlers={404: http_error, 405: http_error})
