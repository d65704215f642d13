"""The Gemini adapter: `models/{m}:generateContent` and `:streamGenerateContent?alt=sse`.

Gemini speaks neither client format, so chat requests are translated by
`chat_over_gemini` (and `/v1/messages` clients go through chat on top of
that). The key travels in `x-goog-api-key`. A Gemini stream has no end marker:
it ends when the body ends, and is complete only if a chunk carried a
`finishReason`. `usageMetadata` arrives with the chunks and is cumulative; the
last one seen is final.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import quote

import aiohttp
import orjson

from p402.pipeline.ports import Call, Reply, Usage
from p402.providers.base import HttpAdapter, StreamFault, parse_event_json
from p402.providers.chat_over_gemini import (GeminiChunkWriter, completion_from_gemini, gemini_request_from_chat,
                                             read_gemini_usage)
from p402.providers.relay import Tally
from p402.providers.sse import SSEEvent

__all__ = ["GeminiAdapter"]


def _tally_parts(doc: Mapping[str, Any], tally: Tally) -> None:
    for cand in doc.get("candidates") or ():
        for part in (cand.get("content") or {}).get("parts") or ():
            tally.text(part.get("text"))
            if isinstance(part.get("functionCall"), dict):
                tally.text(part["functionCall"].get("name"))
                tally.text(orjson.dumps(part["functionCall"].get("args") or {}).decode())


class GeminiAdapter(HttpAdapter):
    """Google's Gemini API (Generative Language API, v1beta)."""

    default_base_url = "https://generativelanguage.googleapis.com/v1beta"
    native_routes = frozenset({"chat"})
    upstream_format = "gemini"

    def __init__(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self._api_key = str(self.settings.get("api_key") or "")

    def __repr__(self) -> str:  # never show the key
        return f"GeminiAdapter(name={self.name!r}, base_url={self.base_url!r})"

    def url(self, model: str, stream: bool) -> str:
        name = quote(model.removeprefix("models/"), safe="")
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self.base_url}/models/{name}:{action}"

    async def _send(self, call: Call) -> Reply:
        model = str(call.body.get("model") or call.upstream_model)
        headers = {"x-goog-api-key": self._api_key, "Content-Type": "application/json"}
        payload = orjson.dumps(gemini_request_from_chat(call.body))
        sent = await self.post(call, self.url(model, call.stream), payload, headers)
        if isinstance(sent, Reply):
            return sent
        if call.stream:
            return await self._stream(call, sent, model)
        _, doc = await self.read_json(sent)
        usage = Usage()
        if isinstance(doc.get("usageMetadata"), dict):
            read_gemini_usage(doc["usageMetadata"], usage)
        else:
            tally = Tally(usage, call.input_tokens_bound)
            _tally_parts(doc, tally)
            tally.finish()
        return Reply(sent.status, body=orjson.dumps(completion_from_gemini(doc, usage, model)), usage=usage)

    async def _stream(self, call: Call, resp: aiohttp.ClientResponse, model: str) -> Reply:
        usage = Usage()
        tally = Tally(usage, call.input_tokens_bound)
        writer = GeminiChunkWriter(usage, call.client_wants_usage, model)

        def step(event: SSEEvent | None) -> tuple[list[bytes], bool]:
            if event is None:
                if writer.reason is None:
                    raise StreamFault("the stream ended without a finishReason")
                return writer.finish(), True
            doc = parse_event_json(event)
            if doc.get("error"):
                err = doc["error"]
                raise StreamFault(str(err.get("message") if isinstance(err, dict) else err))
            meta = doc.get("usageMetadata")
            if isinstance(meta, dict):
                # Cumulative: the prompt is known from the first report, the output only at the end.
                read_gemini_usage(meta, usage, final=False)
                tally.input_known = True
            _tally_parts(doc, tally)
            frames = writer.chunk(doc)
            if writer.reason is not None and isinstance(meta, dict):
                usage.reported = True
                tally.output_known = True
            return frames, False

        stream = await self.open_stream(resp, tally, step)
        return Reply(resp.status, content_type="text/event-stream", chunks=stream, usage=usage)
