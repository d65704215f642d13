"""The Anthropic adapter: native Messages (`POST /v1/messages`) and translated Chat Completions.

A `/v1/messages` client's body is relayed untouched (the pipeline already set
the model and `max_tokens`) and the answer relayed as Anthropic sent it; an
OpenAI chat client is translated both ways by `chat_over_anthropic`.

Usage: `input_tokens` (Anthropic already excludes cached tokens from it),
`cache_read_input_tokens`, `cache_creation_input_tokens`, `output_tokens`
(thinking included). In a stream, `message_start` carries the input side and
`message_delta` the cumulative output; the report is final at `message_delta`.
"""

from __future__ import annotations

from typing import Any, Mapping

import aiohttp
import orjson

from p402.pipeline.ports import Call, Reply, Usage
from p402.providers.base import HttpAdapter, StreamFault, parse_event_json
from p402.providers.chat_over_anthropic import ChunkWriter, completion_from_message, messages_request_from_chat
from p402.providers.relay import Tally
from p402.providers.sse import SSEEvent, reframe

__all__ = ["AnthropicAdapter", "read_anthropic_usage", "ANTHROPIC_VERSION"]

ANTHROPIC_VERSION = "2023-06-01"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def read_anthropic_usage(report: Mapping[str, Any], usage: Usage, *, final: bool = True) -> None:
    """Fill `usage` from an Anthropic `usage` object; fields absent from `report` are left alone."""
    if "input_tokens" in report and report["input_tokens"] is not None:
        usage.input_tokens = _int(report["input_tokens"])
    if report.get("cache_read_input_tokens") is not None:
        usage.cache_read_tokens = _int(report["cache_read_input_tokens"])
    if report.get("cache_creation_input_tokens") is not None:
        usage.cache_write_tokens = _int(report["cache_creation_input_tokens"])
    if report.get("output_tokens") is not None:
        usage.output_tokens = _int(report["output_tokens"])
    if final:
        usage.reported = True


class AnthropicAdapter(HttpAdapter):
    """Anthropic's API (base_url without `/v1`, as the Anthropic SDK takes it)."""

    default_base_url = "https://api.anthropic.com"
    native_routes = frozenset({"messages", "chat"})
    upstream_format = "anthropic"

    def __init__(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self._api_key = str(self.settings.get("api_key") or "")
        self.version = str(self.settings.get("anthropic_version") or ANTHROPIC_VERSION)
        beta = self.settings.get("anthropic_beta") or ()
        # Beta features (1-hour cache, long context...) are switched on per deployment, since
        # the pipeline forwards bodies, not client headers.
        self.beta = ",".join([beta] if isinstance(beta, str) else [str(b) for b in beta])

    def __repr__(self) -> str:  # never show the key
        return f"AnthropicAdapter(name={self.name!r}, base_url={self.base_url!r})"

    def headers(self, stream: bool) -> dict[str, str]:
        headers = {"x-api-key": self._api_key, "anthropic-version": self.version, "Content-Type": "application/json",
                   "Accept": "text/event-stream" if stream else "application/json"}
        if self.beta:
            headers["anthropic-beta"] = self.beta
        return headers

    async def _send(self, call: Call) -> Reply:
        body = call.body if call.route == "messages" else messages_request_from_chat(call.body)
        sent = await self.post(call, self.base_url + "/v1/messages", orjson.dumps(body), self.headers(call.stream))
        if isinstance(sent, Reply):
            return sent
        if call.stream:
            return await self._stream(call, sent)
        raw, doc = await self.read_json(sent)
        usage = Usage()
        report = doc.get("usage")
        if isinstance(report, dict):
            read_anthropic_usage(report, usage)
        else:
            tally = Tally(usage, call.input_tokens_bound)
            for block in doc.get("content") or ():
                if isinstance(block, dict):
                    tally.text(block.get("text") or block.get("thinking"))
            tally.finish()
        if call.route == "chat":
            raw = orjson.dumps(completion_from_message(doc, usage))
        return Reply(sent.status, body=raw, usage=usage)

    async def _stream(self, call: Call, resp: aiohttp.ClientResponse) -> Reply:
        usage = Usage()
        tally = Tally(usage, call.input_tokens_bound)
        writer = ChunkWriter(usage, call.client_wants_usage, call.upstream_model) if call.route == "chat" else None

        def step(event: SSEEvent | None) -> tuple[list[bytes], bool]:
            if event is None:
                raise StreamFault("the stream ended before message_stop")
            doc = parse_event_json(event)
            kind = doc.get("type") or event.event
            if kind == "error":
                err = doc.get("error") or {}
                raise StreamFault(f"{err.get('type', 'error')}: {err.get('message', '')}")
            if kind == "message_start":
                report = (doc.get("message") or {}).get("usage")
                if isinstance(report, dict):
                    read_anthropic_usage(report, usage, final=False)
                    tally.input_known = True
            elif kind == "content_block_delta":
                delta = doc.get("delta") or {}
                tally.text(delta.get("text") or delta.get("partial_json") or delta.get("thinking"))
            elif kind == "message_delta" and isinstance(doc.get("usage"), dict):
                read_anthropic_usage(doc["usage"], usage)
                tally.input_known = tally.output_known = True
            frames = writer.event(doc) if writer is not None else [reframe(event)]
            return frames, kind == "message_stop"

        stream = await self.open_stream(resp, tally, step)
        return Reply(resp.status, content_type="text/event-stream", chunks=stream, usage=usage)
