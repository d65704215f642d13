"""Reading a request body, on the client edge and the admin API alike: bounded in size and in time."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Mapping

__all__ = ["BodyError", "read_body", "BODY_TIMEOUT_S"]

# A client that announced a body and does not send it (a stalled or hostile one) holds a
# connection only this long.
BODY_TIMEOUT_S = 30.0


class BodyError(Exception):
    """Why a body could not be read: an HTTP status, a message and an error code."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, None


async def read_body(receive: Callable[[], Awaitable[Mapping[str, Any]]], limit: int, limit_name: str) -> bytes:
    """The whole body; 413 past `limit` bytes (`limit_name` says which setting), 408 if it has not
    arrived within BODY_TIMEOUT_S, 400 if the client went away first."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            parts, size = [], 0
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    raise BodyError(400, "the client disconnected before sending the body", "invalid_request")
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyError(413, f"the request body exceeds {limit} bytes ({limit_name})",
                                    "request_too_large")
                parts.append(chunk)
                if not msg.get("more_body"):
                    return b"".join(parts)
    except TimeoutError:
        raise BodyError(408, f"the request body did not arrive within {BODY_TIMEOUT_S:g} s",
                        "request_timeout") from None
