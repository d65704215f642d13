"""The admin API's OpenAPI document (`GET /admin/v1/openapi.json`)."""

from __future__ import annotations

from typing import Any

from p402 import __version__

__all__ = ["openapi_document", "ADMIN_PATHS"]

# path -> {method: summary}; the single list the document and the docs test read.
ADMIN_PATHS: dict[str, dict[str, str]] = {
    "/admin/v1/budgets": {"get": "List budgets with their current window's balances",
                          "post": "Create a budget (admin, finance)"},
    "/admin/v1/budgets/{id}": {"get": "One budget", "patch": "Change a budget (admin, finance)",
                               "delete": "Delete a budget (admin, finance)"},
    "/admin/v1/keys": {"get": "List keys (never secrets)", "post": "Create a key; the secret is returned once (admin)"},
    "/admin/v1/keys/{id}/revoke": {"post": "Revoke a key (admin)"},
    "/admin/v1/spend": {"get": "Settled, reserved, cap, remaining per group (group_by, period)"},
    "/admin/v1/ledger/events": {"get": "Ledger rows, newest first (deny_code, scope, since, limit, before)"},
    "/admin/v1/ledger/events/{event_id}": {"get": "Every ledger row of one request, explained, with inclusion proofs"},
    "/admin/v1/ledger/checkpoint": {"get": "The newest signed checkpoint and the checkpoint public key"},
    "/admin/v1/ledger/consistency": {"get": "Consistency proof between two checkpoints (from, to: tree sizes)"},
    "/admin/v1/ledger/export": {"get": "Stream the ledger: format=jsonl (verifiable offline), csv or focus (admin, finance)"},
    "/admin/v1/mandates": {"post": "Submit a signed mandate (admin); verified once, stored by digest"},
    "/admin/v1/mandates/{digest}/revoke": {"post": "Submit a signed revocation of that mandate (admin)"},
    "/admin/v1/overrides": {"post": "Submit a budget owner's signed override (admin, finance)"},
    "/admin/v1/openapi.json": {"get": "This document"},
}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, methods in ADMIN_PATHS.items():
        paths[path] = {}
        for method, summary in methods.items():
            op: dict[str, Any] = {"summary": summary, "security": [{"bearer": []}],
                                  "responses": {"200": {"description": "OK"},
                                                "400": {"description": "Invalid input; error.param names the field"},
                                                "401": {"description": "Missing or unknown admin token"},
                                                "403": {"description": "The token's role may not do this"}}}
            params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
            if params:
                op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                    for p in params]
            paths[path][method] = op
    return {"openapi": "3.1.0", "info": {"title": "p402 admin API", "version": __version__},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "paths": paths}
