"""A fake OpenRouter: the OpenAI wire format under `/api/v1`, plus OpenRouter's additions.

Per OpenRouter's docs: usage accounting adds `usage.cost` (USD credits, a JSON
number), `cost_details` and `prompt_tokens_details.cache_write_tokens`; every
chunk names the serving `provider`; streams open with `: OPENROUTER PROCESSING`
SSE comments; a mid-stream failure is a chunk carrying a top-level `error` and
`finish_reason: "error"`. The usage chunk is sent whenever usage was asked for
(`usage.include` or `stream_options.include_usage`).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tests.providers.fakes.openai_fake import OpenAIFake

__all__ = ["OpenRouterFake"]


class OpenRouterFake(OpenAIFake):
    base_path = "/api/v1"

    def __init__(self, api_key: str = "sk-or-v1-test") -> None:
        super().__init__(api_key)
        self.model_suffix = ""
        self.cost = "0.000123456"  # written into the JSON as a number, as OpenRouter does
        self.cache_write_tokens = 0
        self.error_in_body: dict[str, Any] | None = None  # answer 200 with {"error": ...}, as OpenRouter can

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if self.error_in_body is None:
            return await super().chat(request)
        await self.record(request)
        return web.Response(body=orjson.dumps({"error": self.error_in_body}), content_type="application/json")

    def prompt_details(self) -> dict[str, Any]:
        return {"cached_tokens": self.cached_tokens, "cache_write_tokens": self.cache_write_tokens, "audio_tokens": 0}

    def usage(self) -> dict[str, Any]:
        return {**super().usage(), "cost": orjson.Fragment(self.cost.encode()), "is_byok": False,
                "cost_details": {"upstream_inference_cost": None}}

    def extra_chunk_fields(self) -> dict[str, Any]:
        return {"provider": "OpenAI"}

    def stream_preamble(self) -> list[bytes]:
        return [b": OPENROUTER PROCESSING\n\n", b": OPENROUTER PROCESSING\n\n"]

    def error_frame(self) -> bytes:
        doc = {"id": "gen-fake", "object": "chat.completion.chunk", "created": 1764583200, "model": "x",
               "provider": "OpenAI", "error": {"code": "server_error", "message": "Provider disconnected"},
               "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]}
        return b"data: " + orjson.dumps(doc) + b"\n\n"
