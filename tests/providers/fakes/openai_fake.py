"""A fake OpenAI API: `POST /v1/chat/completions` (streamed or not) and `POST /v1/embeddings`.

Wire format as in the OpenAI API reference: `chat.completion` objects,
`chat.completion.chunk` events (`data: {...}\\n\\n`, then `data: [DONE]`), with
`stream_options.include_usage` the per-chunk `"usage": null` and a final
usage-only chunk with `choices: []`; errors as `{"error": {message, type, param,
code}}`; auth by `Authorization: Bearer`.

Set `reply_text`, `prompt_tokens`, `cached_tokens`, `reasoning_tokens` and
`tool_calls` to shape the answer; usage reported = what is set here
(`completion_tokens` = streamed pieces + reasoning tokens).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tests.providers.fakes.base import FakeServer, split_words

__all__ = ["OpenAIFake"]

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
          404: "invalid_request_error", 429: "requests", 500: "server_error", 503: "server_error"}


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class OpenAIFake(FakeServer):
    base_path = "/v1"

    def __init__(self, api_key: str = "sk-test-openai") -> None:
        super().__init__()
        self.api_key = api_key
        self.reply_text = "Budgets are decided before the call, not after it."
        self.prompt_tokens = 21
        self.cached_tokens = 0
        self.reasoning_tokens = 0
        self.tool_calls: list[dict[str, Any]] = []  # [{"id", "name", "arguments"}]
        self.model_suffix = "-2024-07-18"

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.base_path + "/chat/completions", self.chat),
                web.post(self.base_path + "/embeddings", self.embeddings)]

    def error_response(self, status: int, message: str) -> web.Response:
        body = {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"),
                          "param": None, "code": "rate_limit_exceeded" if status == 429 else None}}
        return web.json_response(body, status=status, dumps=lambda o: orjson.dumps(o).decode())

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    # -- usage as OpenAI reports it ---------------------------------------------------------------------

    def completion_tokens(self) -> int:
        pieces = len(split_words(self.reply_text)) if self.reply_text else 0
        return pieces + len(self.tool_calls) * 2 + self.reasoning_tokens

    def prompt_details(self) -> dict[str, Any]:
        return {"cached_tokens": self.cached_tokens, "audio_tokens": 0}

    def usage(self) -> dict[str, Any]:
        out = self.completion_tokens()
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": out,
                "total_tokens": self.prompt_tokens + out,
                "prompt_tokens_details": self.prompt_details(),
                "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}

    # -- handlers ------------------------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        rec = await self.record(request)
        early = await self.before_answer(request)
        if early is not None:
            return early
        if not self._authorized(request):
            return self.error_response(401, "Incorrect API key provided.")
        body = rec.json or {}
        if not body.get("messages"):
            return self.error_response(400, "'messages' is a required property")
        model = str(body.get("model")) + self.model_suffix
        if body.get("stream"):
            return await self._stream(request, body, model)
        message: dict[str, Any] = {"role": "assistant", "content": self.reply_text or None, "refusal": None,
                                   "annotations": []}
        if self.tool_calls:
            message["tool_calls"] = [{"id": t["id"], "type": "function",
                                      "function": {"name": t["name"], "arguments": t["arguments"]}}
                                     for t in self.tool_calls]
        doc = {"id": "chatcmpl-fake1", "object": "chat.completion", "created": 1764583200, "model": model,
               "choices": [{"index": 0, "message": message, "logprobs": None,
                            "finish_reason": "tool_calls" if self.tool_calls else "stop"}],
               "usage": self.usage(), "service_tier": "default", "system_fingerprint": "fp_fake"}
        self.sent_text = self.reply_text
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    def extra_chunk_fields(self) -> dict[str, Any]:
        return {}

    def chunk(self, model: str, delta: dict[str, Any], finish: str | None, with_usage: bool) -> bytes:
        doc: dict[str, Any] = {"id": "chatcmpl-fake1", "object": "chat.completion.chunk", "created": 1764583200,
                               "model": model, "service_tier": "default", "system_fingerprint": "fp_fake",
                               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                               **self.extra_chunk_fields()}
        if with_usage:
            doc["usage"] = None
        return _sse(doc)

    def usage_chunk(self, model: str) -> bytes:
        return _sse({"id": "chatcmpl-fake1", "object": "chat.completion.chunk", "created": 1764583200,
                     "model": model, "service_tier": "default", "system_fingerprint": "fp_fake", "choices": [],
                     "usage": self.usage(), **self.extra_chunk_fields()})

    def stream_preamble(self) -> list[bytes]:
        return []

    async def _stream(self, request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        role = {"role": "assistant", "content": "", "refusal": None}
        head = self.stream_preamble() + [self.chunk(model, role, None, with_usage)]
        content = [(self.chunk(model, {"content": w}, None, with_usage), w)
                   for w in (split_words(self.reply_text) if self.reply_text else [])]
        for i, t in enumerate(self.tool_calls):
            start = {"tool_calls": [{"index": i, "id": t["id"], "type": "function",
                                     "function": {"name": t["name"], "arguments": ""}}]}
            args = {"tool_calls": [{"index": i, "function": {"arguments": t["arguments"]}}]}
            content += [(self.chunk(model, start, None, with_usage), t["name"]),
                        (self.chunk(model, args, None, with_usage), t["arguments"])]
        finish = "tool_calls" if self.tool_calls else "stop"
        tail = [self.chunk(model, {}, finish, with_usage)]
        if with_usage:
            tail.append(self.usage_chunk(model))
        tail.append(b"data: [DONE]\n\n")

        def more(i: int) -> tuple[bytes, str]:
            return self.chunk(model, {"content": " more"}, None, with_usage), " more"

        return await self.write_stream(request, head, content, tail, more=more, error_frame=self.error_frame)

    def error_frame(self) -> bytes:
        return _sse({"error": {"message": "The server had an error while processing your request.",
                               "type": "server_error", "param": None, "code": None}})

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        rec = await self.record(request)
        early = await self.before_answer(request)
        if early is not None:
            return early
        if not self._authorized(request):
            return self.error_response(401, "Incorrect API key provided.")
        body = rec.json or {}
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [{"object": "embedding", "index": i, "embedding": [0.0023064255, -0.009327292, 0.015797347]}
                for i in range(len(items))]
        doc = {"object": "list", "data": data, "model": body.get("model"),
               "usage": {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens}}
        return web.Response(body=orjson.dumps(doc), content_type="application/json")
