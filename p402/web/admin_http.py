"""The admin API's HTTP plumbing: bearer tokens and roles, error envelopes, JSON bodies.

Roles: `admin` (everything), `finance` (budgets, overrides, ledger, exports),
`viewer` (read only). Errors use the OpenAI-style envelope and name the field.
"""

from __future__ import annotations

import hmac
from typing import Any, Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from p402.errors import ConfigError, Conflict, NotFound, StoreUnavailable
from p402.web.bodies import BodyError, read_body

__all__ = ["ApiError", "json_response", "role_of", "endpoint", "body_of", "Handler"]

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


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in the API's JSON error envelope."""
    status = getattr(exc, "status_code", 500)
    if status == 405:
        return _error(ApiError(405, f"{request.method} is not allowed on {request.url.path}", "method_not_allowed"))
    return _error(ApiError(status, f"no admin route {request.url.path}", "not_found"))


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


Handler = Callable[[Request, str], Awaitable[Any]]


def endpoint(runtime: Any, area: str | None, fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: authenticate, enforce the role for writes, map errors to 4xx/503."""
    async def handle(request: Request) -> Response:
        try:
            role = role_of(runtime, request)
            if request.method not in ("GET", "HEAD") and area is not None and role not in _WRITE[area]:
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


# Admin payloads are budgets, keys and signed documents: a few KB. Anything far larger is refused
# before it is read whole.
MAX_ADMIN_BODY_BYTES = 1024 * 1024


async def body_of(request: Request) -> dict[str, Any]:
    try:
        raw = await read_body(request.receive, MAX_ADMIN_BODY_BYTES, "the admin API's limit")
    except BodyError as exc:
        raise ApiError(exc.status, exc.message, exc.code) from None
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_request")
    return data
