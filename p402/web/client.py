"""The client routes, as raw ASGI (no framework on the hot path).

`POST /v1/chat/completions`, `POST /v1/embeddings`, `POST /v1/messages` and
`GET /v1/models`. This module only translates HTTP to `Inbound` and `Refusal` /
`Admitted` back to HTTP; every decision is `Gateway.handle`'s.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Awaitable, Callable, Mapping

import orjson

from p402.core.money import format_usd
from p402.core.policy import Policy
from p402.core.scopes import HEADER_KINDS, Attribution
from p402.pipeline.gateway import Admitted, Gateway, Inbound, Refusal
from p402.web.bodies import BodyError, read_body
from p402.web.envelopes import anthropic_error, openai_error
from p402.web.shapes import ShapeError, check_chat, check_messages

__all__ = ["ClientRoutes", "ROUTES"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ROUTES = {b"/v1/chat/completions": "chat", b"/v1/embeddings": "embeddings", b"/v1/messages": "messages"}
_PATHS = {k.decode(): v for k, v in ROUTES.items()}
_ATTRIBUTION_HEADERS = {f"x-p402-{k}".encode(): k for k in HEADER_KINDS}
_DIGEST = re.compile(r"0[xX][0-9a-fA-F]{64}")


class BadRequest(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def _validate(route: str, body: Any) -> dict[str, Any]:
    """Shape checks that name the offending field; the provider checks the rest."""
    if not isinstance(body, dict):
        raise BadRequest(400, "the request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest(400, "model: required, a model name string", "model")
    if route in ("chat", "messages"):
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise BadRequest(400, "messages: required, a non-empty list of messages", "messages")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise BadRequest(400, f"messages[{i}]: must be an object with a role", f"messages[{i}]")
        try:
            (check_chat if route == "chat" else check_messages)(body)
        except ShapeError as exc:
            raise BadRequest(400, exc.message, exc.param) from None
    else:
        inp = body.get("input")
        if not (isinstance(inp, str) or (isinstance(inp, list) and inp)):
            raise BadRequest(400, "input: required, a string or a non-empty list", "input")
        if isinstance(inp, list):
            # Strings, token ids, or token arrays (OpenAI's shapes): anything else could not be
            # counted, and an input that is not counted would make the estimate too low.
            for i, item in enumerate(inp):
                if not (isinstance(item, str) or _is_token(item)
                        or (isinstance(item, list) and all(_is_token(t) for t in item))):
                    raise BadRequest(400, f"input[{i}]: must be a string, a token id or a list of token ids",
                                     f"input[{i}]")
    return body


def _is_token(value: Any) -> bool:
    """An integer in JSON (a token id, or a count): not a bool, which Python counts as an int."""
    return isinstance(value, int) and not isinstance(value, bool)


class ClientRoutes:
    """The client-facing half of the ASGI app."""

    def __init__(self, gateway: Gateway, policy: Callable[[], Policy], max_body_bytes: int,
                 count: Callable[[str, int], None]) -> None:
        self.gateway, self.policy, self.max_body_bytes, self.count = gateway, policy, max_body_bytes, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/v1/models":
            if scope["method"] not in ("GET", "HEAD"):
                await self._error(send, False, 405, "method_not_allowed", f"{path} takes GET")
                return
            await self._models(scope, send)
            return
        route = _PATHS[path]
        anthropic = route == "messages"
        if scope["method"] != "POST":
            await self._error(send, anthropic, 405, "method_not_allowed", f"{path} takes POST")
            self.count(route, 405)
            return
        started = time.perf_counter()
        headers = _headers(scope)
        if len(headers) != len(scope["headers"]):  # a header came twice: never pick one of two attributions
            twice = _repeated(scope, _ONCE_HEADERS)
            if twice is not None:
                param = "-".join(w.capitalize() for w in twice.decode().split("-"))
                await self._error(send, anthropic, 400, "invalid_attribution" if twice.startswith(b"x-p402-")
                                  else "invalid_request", f"{param}: sent more than once; send it once", param)
                self.count(route, 400)
                return
        # Who is asking comes first, as at any API gateway: an unknown key learns nothing about
        # the body's shape, and costs no parsing.
        key = await self.gateway.authenticate(_secret(headers), route)
        if isinstance(key, Refusal):
            await self._refuse(send, anthropic, key)
            self.count(route, key.status)
            return
        try:
            raw = await read_body(receive, self.max_body_bytes, "limits.max_body_bytes")
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(400, f"the request body is not valid JSON: {exc}") from None
            body = _validate(route, body)
            mandate = headers.get(b"x-p402-mandate")
            if mandate is not None and not _DIGEST.fullmatch(mandate):
                raise BadRequest(400, "X-P402-Mandate: must be a mandate digest, 0x and 64 hex digits",
                                 "X-P402-Mandate", code="invalid_attribution")
        except (BadRequest, BodyError) as exc:
            await self._error(send, anthropic, exc.status, exc.code, exc.message, exc.param)
            self.count(route, exc.status)
            return
        inbound = Inbound(route, body, key, {k: headers[h] for h, k in _ATTRIBUTION_HEADERS.items() if h in headers},
                          mandate, started)
        outcome = await self.gateway.handle(inbound)
        if isinstance(outcome, Refusal):
            await self._refuse(send, anthropic, outcome)
        else:
            await self._relay(scope, receive, send, outcome)
        self.count(route, outcome.status if isinstance(outcome, Refusal) else outcome.reply.status)

    async def _refuse(self, send: Send, anthropic: bool, r: Refusal) -> None:
        if anthropic:
            body = anthropic_error(r.status, r.message, r.p402, r.code if r.p402 is None else r.code)
        else:
            body = openai_error(r.message, r.error_type, r.code, r.param, r.p402)
        await _respond(send, r.status, body, [(k.encode(), v.encode()) for k, v in r.headers])

    async def _error(self, send: Send, anthropic: bool, status: int, code: str, message: str,
                     param: str | None = None) -> None:
        await self._refuse(send, anthropic, Refusal(status, code, message, param))

    async def _relay(self, scope: Scope, receive: Receive, send: Send, a: Admitted) -> None:
        extra = [(k.encode(), v.encode()) for k, v in a.headers]
        if a.chunks is None:
            assert a.reply.body is not None
            await _respond(send, a.reply.status, a.reply.body, extra, a.reply.content_type.encode())
            return
        chunks = a.chunks
        try:
            await send({"type": "http.response.start", "status": a.reply.status,
                        "headers": [(b"content-type", a.reply.content_type.encode()),
                                    (b"cache-control", b"no-cache"), *extra]})

            async def pump() -> None:
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass

            pumping, watching = asyncio.ensure_future(pump()), asyncio.ensure_future(watch())
            done, _ = await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
            if pumping in done:
                watching.cancel()
            else:  # the client went away: stop the upstream call; the relay settles what was generated
                pumping.cancel()
            try:
                await pumping
            except (asyncio.CancelledError, OSError):
                pass
        finally:
            # However the stream ended (done, client gone, even before the first chunk),
            # the hold is settled exactly once.
            if a.close is not None:
                await a.close()

    async def _models(self, scope: Scope, send: Send) -> None:
        headers = _headers(scope)
        key = await self.gateway.authenticate(_secret(headers), "models")
        if isinstance(key, Refusal):
            await self._refuse(send, False, key)
            return
        policy = self.policy()
        who = Attribution(tenant=key.tenant, key=key.id, department=key.department, employee=key.employee,
                          workflow=key.workflow)
        data = []
        for m in policy.usable_models(who):
            assert m.price is not None
            price = {"input_per_mtok": format_usd(m.price.input), "output_per_mtok": format_usd(m.price.output)}
            data.append({"id": m.name, "object": "model", "created": 0, "owned_by": m.provider,
                         "p402": {"provider": m.provider, "upstream": m.upstream, "categories": sorted(m.categories),
                                  "price": price, "max_output_tokens": m.max_output_tokens,
                                  "context_window": m.context_window}})
        await _respond(send, 200, orjson.dumps({"object": "list", "data": data}), [])


def _headers(scope: Scope) -> dict[bytes, str]:
    return {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}


# Headers whose value decides who pays or who asks: sent twice, they are refused, not merged.
_ONCE_HEADERS = frozenset({*_ATTRIBUTION_HEADERS, b"x-p402-mandate", b"authorization", b"x-api-key"})


def _repeated(scope: Scope, names: frozenset[bytes]) -> bytes | None:
    seen: set[bytes] = set()
    for raw, _ in scope["headers"]:
        name: bytes = raw.lower()
        if name in names:
            if name in seen:
                return name
            seen.add(name)
    return None


def _secret(headers: Mapping[bytes, str]) -> str | None:
    auth = headers.get(b"authorization")
    if auth is not None and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get(b"x-api-key") or None


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]],
                   content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
