"""Error bodies in each client format.

OpenAI format: `{"error": {"message", "type", "param", "code"}}` (every OpenAI SDK
raises a typed error carrying it). Anthropic format:
`{"type": "error", "error": {"type", "message"}}`. A p402 denial adds its `p402`
object inside `error` in both (SPEC §3).
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["openai_error", "anthropic_error", "ANTHROPIC_TYPES"]

# Anthropic's error type for each HTTP status.
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                   403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
                   408: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error",
                   500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "api_error"}


def openai_error(message: str, error_type: str, code: str | None, param: str | None = None,
                 p402: dict[str, Any] | None = None) -> bytes:
    error: dict[str, Any] = {"message": message, "type": error_type, "param": param, "code": code}
    if p402 is not None:
        error["p402"] = p402
    return orjson.dumps({"error": error})


def anthropic_error(status: int, message: str, p402: dict[str, Any] | None = None, code: str | None = None) -> bytes:
    error: dict[str, Any] = {"type": ANTHROPIC_TYPES.get(status, "api_error"), "message": message}
    if code is not None:
        error["code"] = code
    if p402 is not None:
        error["p402"] = p402
    return orjson.dumps({"type": "error", "error": error})
