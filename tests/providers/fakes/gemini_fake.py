"""A fake Gemini API: `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`.

Wire format as in the Gemini API reference: `GenerateContentResponse` objects
(`candidates[].content.parts[]` with `text`, `thought`, `functionCall`;
`finishReason`; `usageMetadata` with promptTokenCount, cachedContentTokenCount,
candidatesTokenCount, thoughtsTokenCount, totalTokenCount; `modelVersion`,
`responseId`); streams are SSE `data:` events ended by CRLF CRLF with no end
marker, usage on every chunk (cumulative); errors as
`{"error": {code, message, status}}`; auth by `x-goog-api-key`.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tests.providers.fakes.base import FakeServer, split_words

__all__ = ["GeminiFake"]

_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
           500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\r\n\r\n"


class GeminiFake(FakeServer):
    base_path = "/v1beta"

    def __init__(self, api_key: str = "AIza-test") -> None:
        super().__init__()
        self.api_key = api_key
        self.reply_text = "Budgets are decided before the call, not after it."
        self.thought_text = ""
        self.function_calls: list[dict[str, Any]] = []  # [{"name", "args"}]
        self.prompt_tokens = 30
        self.cached_tokens = 0
        self.thoughts_tokens = 0
        self.finish_reason: str | None = "STOP"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1beta/models/{target}", self.generate)]

    def error_response(self, status: int, message: str) -> web.Response:
        body = {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    def candidates_tokens(self) -> int:
        return (len(split_words(self.reply_text)) if self.reply_text else 0) + 4 * len(self.function_calls)

    def usage(self, candidates: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {"promptTokenCount": self.prompt_tokens,
                               "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt_tokens}]}
        if self.cached_tokens:
            out["cachedContentTokenCount"] = self.cached_tokens
        if candidates is not None:
            out["candidatesTokenCount"] = candidates
        if self.thoughts_tokens and candidates is not None:
            out["thoughtsTokenCount"] = self.thoughts_tokens
        out["totalTokenCount"] = self.prompt_tokens + (candidates or 0) + (self.thoughts_tokens if candidates else 0)
        return out

    def response(self, model: str, parts: list[dict[str, Any]], finish: str | None,
                 usage: dict[str, Any]) -> dict[str, Any]:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            cand["finishReason"] = finish
        return {"candidates": [cand], "usageMetadata": usage, "modelVersion": model, "responseId": "resp-fake1"}

    async def generate(self, request: web.Request) -> web.StreamResponse:
        rec = await self.record(request)
        early = await self.before_answer(request)
        if early is not None:
            return early
        if request.headers.get("x-goog-api-key") != self.api_key:
            return self.error_response(400, "API key not valid. Please pass a valid API key.")
        model, _, action = request.match_info["target"].partition(":")
        if not (rec.json or {}).get("contents"):
            return self.error_response(400, "* GenerateContentRequest.contents: contents is not specified")
        parts: list[dict[str, Any]] = []
        if self.thought_text:
            parts.append({"text": self.thought_text, "thought": True})
        if self.reply_text:
            parts.append({"text": self.reply_text})
        parts += [{"functionCall": fc} for fc in self.function_calls]
        if action == "streamGenerateContent":
            if request.query.get("alt") != "sse":
                return self.error_response(400, "this fake only streams with alt=sse")
            return await self._stream(request, model)
        if action != "generateContent":
            return self.error_response(404, f"unknown action {action}")
        self.sent_text = self.reply_text
        doc = self.response(model, parts, self.finish_reason, self.usage(self.candidates_tokens()))
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    async def _stream(self, request: web.Request, model: str) -> web.StreamResponse:
        content: list[tuple[bytes, str]] = []
        if self.thought_text:
            content.append((_sse(self.response(model, [{"text": self.thought_text, "thought": True}], None,
                                               self.usage(None))), self.thought_text))
        words = split_words(self.reply_text) if self.reply_text else []
        for n, w in enumerate(words):
            content.append((_sse(self.response(model, [{"text": w}], None, self.usage(n + 1))), w))
        for fc in self.function_calls:
            content.append((_sse(self.response(model, [{"functionCall": fc}], None, self.usage(None))), fc["name"]))
        last = self.response(model, [{"text": ""}], self.finish_reason, self.usage(self.candidates_tokens()))
        tail = [_sse(last)]

        def more(i: int) -> tuple[bytes, str]:
            return _sse(self.response(model, [{"text": " more"}], None, self.usage(i))), " more"

        def error_frame() -> bytes:
            return _sse({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})

        return await self.write_stream(request, [], content, tail, more=more, error_frame=error_frame,
                                       garbage=b"data: {\"candidates\": [{\"content\"\r\n\r\n")
