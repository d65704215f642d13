"""Error bodies in the client's wire format, and upstream errors translated into them.

A provider's 4xx (other than 429) is the client's problem (a bad parameter, a
too-long prompt), so it is relayed with its status; but the client's SDK only
raises a useful typed error if the body is in *its* format. An upstream error
already in the client's format is relayed byte for byte.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

__all__ = ["client_error", "relay_error", "upstream_message", "ANTHROPIC_ERROR_TYPES"]

# Anthropic's documented error types by HTTP status.
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                         404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                         500: "api_error", 529: "overloaded_error"}
_OPENAI_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                       429: "rate_limit_error"}


def client_error(route: str, status: int, message: str, error_type: str | None = None,
                 code: str | None = None) -> bytes:
    """An error body as the client of `route` expects it."""
    if route == "messages":
        kind = error_type or ANTHROPIC_ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    kind = error_type or _OPENAI_ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def upstream_message(raw: bytes, error_type_header: str | None = None) -> tuple[str, str | None]:
    """The message and type of any provider's error body (OpenAI, Anthropic, Gemini, Bedrock shapes)."""
    kind = error_type_header.split(":", 1)[0] if error_type_header else None
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace").strip()[:2000] or "no detail", kind
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        doc = doc[0]  # Gemini sometimes wraps its error in a one-element list
    if not isinstance(doc, dict):
        return str(doc)[:2000], kind
    err = doc.get("error")
    if isinstance(err, dict):
        message = err.get("message") or orjson.dumps(err).decode()
        kind = err.get("type") or err.get("status") or kind
        return str(message), str(kind) if kind else None
    if isinstance(err, str):
        return err, kind
    message = doc.get("message") or doc.get("Message") or orjson.dumps(doc).decode()
    return str(message), kind


def relay_error(route: str, status: int, raw: bytes, upstream_format: str,
                headers: Mapping[str, str] | None = None) -> bytes:
    """Translate an upstream 4xx body into the client's format (verbatim if it already is)."""
    native = "anthropic" if route == "messages" else "openai"
    if upstream_format == native and _is_json_object(raw):
        return raw
    header = (headers or {}).get("x-amzn-ErrorType") if headers is not None else None
    message, kind = upstream_message(raw, header)
    if route == "messages" and kind not in ANTHROPIC_ERROR_TYPES.values():
        kind = None  # a foreign type name would confuse the Anthropic SDK's error classes
    return client_error(route, status, message, kind)


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        return False
