"""A fake Anthropic API: `POST /v1/messages`, streamed or not.

Wire format as in Anthropic's Messages reference: `message` objects; named SSE
events `message_start` (input usage), `content_block_start` / `_delta` / `_stop`
(text_delta, input_json_delta, thinking_delta), `ping`, `message_delta`
(stop_reason and cumulative output usage), `message_stop`; in-band `error`
events; errors as `{"type": "error", "error": {type, message}}`; auth by
`x-api-key` plus a required `anthropic-version` header.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from p402.providers.error_bodies import ANTHROPIC_ERROR_TYPES
from tests.providers.fakes.base import FakeServer, split_words

__all__ = ["AnthropicFake"]


def _event(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class AnthropicFake(FakeServer):
    def __init__(self, api_key: str = "sk-ant-test") -> None:
        super().__init__()
        self.api_key = api_key
        self.reply_text = "Budgets are decided before the call, not after it."
        self.thinking_text = ""
        self.tool_uses: list[dict[str, Any]] = []  # [{"id", "name", "input"}]
        self.input_tokens = 25
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.stop_reason = "end_turn"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self.messages)]

    def error_response(self, status: int, message: str) -> web.Response:
        kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    def output_tokens(self) -> int:
        words = len(split_words(self.reply_text)) if self.reply_text else 0
        thinking = len(split_words(self.thinking_text)) if self.thinking_text else 0
        return words + thinking + 3 * len(self.tool_uses)

    def usage(self, output: int) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "cache_creation_input_tokens": self.cache_write_tokens,
                "cache_read_input_tokens": self.cache_read_tokens,
                "cache_creation": {"ephemeral_5m_input_tokens": self.cache_write_tokens,
                                   "ephemeral_1h_input_tokens": 0},
                "output_tokens": output, "service_tier": "standard"}

    async def messages(self, request: web.Request) -> web.StreamResponse:
        rec = await self.record(request)
        early = await self.before_answer(request)
        if early is not None:
            return early
        if request.headers.get("x-api-key") != self.api_key:
            return self.error_response(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self.error_response(400, "anthropic-version: header is required")
        body = rec.json or {}
        if not isinstance(body.get("max_tokens"), int):
            return self.error_response(400, "max_tokens: Field required")
        model = str(body.get("model"))
        stop = "tool_use" if self.tool_uses else self.stop_reason
        if body.get("stream"):
            return await self._stream(request, model, stop)
        content: list[dict[str, Any]] = []
        if self.thinking_text:
            content.append({"type": "thinking", "thinking": self.thinking_text, "signature": "sig"})
        if self.reply_text:
            content.append({"type": "text", "text": self.reply_text})
        content += [{"type": "tool_use", **t} for t in self.tool_uses]
        doc = {"id": "msg_fake01", "type": "message", "role": "assistant", "model": model, "content": content,
               "stop_reason": stop, "stop_sequence": None, "usage": self.usage(self.output_tokens())}
        self.sent_text = self.reply_text
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    async def _stream(self, request: web.Request, model: str, stop: str) -> web.StreamResponse:
        start = {"type": "message_start", "message": {
            "id": "msg_fake01", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": self.usage(1)}}
        head = [_event("message_start", start), _event("ping", {"type": "ping"})]
        content: list[tuple[bytes, str]] = []
        index = 0
        if self.thinking_text:
            content += self._block(index, {"type": "thinking", "thinking": ""},
                                   [({"type": "thinking_delta", "thinking": w}, w)
                                    for w in split_words(self.thinking_text)])
            index += 1
        if self.reply_text:
            content += self._block(index, {"type": "text", "text": ""},
                                   [({"type": "text_delta", "text": w}, w) for w in split_words(self.reply_text)])
            index += 1
        for t in self.tool_uses:
            args = orjson.dumps(t["input"]).decode()
            content += self._block(index, {"type": "tool_use", "id": t["id"], "name": t["name"], "input": {}},
                                   [({"type": "input_json_delta", "partial_json": args}, args)])
            index += 1
        tail = [_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop,
                                                                             "stop_sequence": None},
                                         "usage": {"output_tokens": self.output_tokens()}}),
                _event("message_stop", {"type": "message_stop"})]

        def more(i: int) -> tuple[bytes, str]:
            return _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                  "delta": {"type": "text_delta", "text": " more"}}), " more"

        return await self.write_stream(request, head, content, tail, more=more, error_frame=self.error_frame,
                                       garbage=b"event: content_block_delta\ndata: {\"type\": \"content_bl\n\n")

    @staticmethod
    def _block(index: int, start: dict[str, Any], deltas: list[tuple[dict[str, Any], str]]) -> list[tuple[bytes, str]]:
        out = [(_event("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": start}), "")]
        out += [(_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}), text)
                for d, text in deltas]
        out.append((_event("content_block_stop", {"type": "content_block_stop", "index": index}), ""))
        return out

    @staticmethod
    def error_frame() -> bytes:
        return _event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
