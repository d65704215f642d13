"""The OpenAI-compatible adapter: Chat Completions (streamed or not) and Embeddings.

Requests are relayed as the client wrote them (the pipeline already set the
upstream model and the output bound). Streams always ask the provider for its
usage report (`stream_options.include_usage`), because settling needs it; the
usage-only chunk (`choices: []`) is then dropped unless the client asked for it
too. Usage: `prompt_tokens_details.cached_tokens` are cache reads and are taken
out of the input; reasoning tokens are already inside `completion_tokens`.
"""

from __future__ import annotations

from typing import Any, Mapping

import aiohttp
import orjson

from p402.errors import UpstreamError
from p402.pipeline.ports import Call, Reply, Usage
from p402.providers.base import HttpAdapter, StreamFault
from p402.providers.error_bodies import client_error
from p402.providers.relay import Tally
from p402.providers.sse import DONE_FRAME, SSEEvent, reframe, sse_frame_batches

__all__ = ["OpenAIAdapter", "read_openai_usage"]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def read_openai_usage(report: Mapping[str, Any], usage: Usage) -> None:
    """Fill `usage` from an OpenAI `usage` object (cached and cache-written tokens split out)."""
    details = report.get("prompt_tokens_details") or {}
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    # OpenRouter also reports prompt-cache writes here; OpenAI never does.
    written = _int(details.get("cache_write_tokens")) if isinstance(details, dict) else 0
    prompt = _int(report.get("prompt_tokens"))
    usage.cache_read_tokens = cached
    usage.cache_write_tokens = written
    usage.input_tokens = max(prompt - cached - written, 0)
    usage.output_tokens = _int(report.get("completion_tokens"))
    usage.reported = True


def tally_chat_delta(choice: Mapping[str, Any], tally: Tally, key: str = "delta") -> None:
    """Count the output in one chat choice (a stream delta or a whole message)."""
    delta = choice.get(key)
    if not isinstance(delta, dict):
        return
    for field in ("content", "reasoning_content", "reasoning", "refusal"):
        tally.text(delta.get(field))
    for call in delta.get("tool_calls") or ():
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            tally.text(call["function"].get("name"))
            tally.text(call["function"].get("arguments"))


class OpenAIAdapter(HttpAdapter):
    """OpenAI, and any server that speaks its API (`base_url`)."""

    default_base_url = "https://api.openai.com/v1"
    native_routes = frozenset({"chat", "embeddings"})
    upstream_format = "openai"
    output_bound_field = "max_completion_tokens"  # what a translated /v1/messages request uses

    def __init__(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        key = self.settings.get("api_key")
        self._api_key = str(key) if key else None

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def request_body(self, call: Call) -> dict[str, Any]:
        """The upstream body; subclasses add their provider's switches."""
        body = dict(call.body)
        if call.route == "chat" and call.stream:
            body["stream"] = True
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return body

    def read_usage(self, report: Mapping[str, Any], usage: Usage) -> None:
        read_openai_usage(report, usage)

    async def _send(self, call: Call) -> Reply:
        path = "/embeddings" if call.route == "embeddings" else "/chat/completions"
        stream = call.stream and call.route == "chat"
        headers = self.headers()
        if stream:
            headers["Accept"] = "text/event-stream"
        sent = await self.post(call, self.base_url + path, orjson.dumps(self.request_body(call)), headers)
        if isinstance(sent, Reply):
            return sent
        if stream:
            return await self._stream(call, sent)
        return await self._whole(call, sent)

    async def _whole(self, call: Call, resp: aiohttp.ClientResponse) -> Reply:
        raw, doc = await self.read_json(resp)
        if "error" in doc and "choices" not in doc and "data" not in doc:
            return self._error_in_body(call, doc)
        usage = Usage()
        report = doc.get("usage")
        if isinstance(report, dict):
            self.read_usage(report, usage)
        else:
            # An OpenAI-compatible server that reports no usage: bound it ourselves.
            tally = Tally(usage, call.input_tokens_bound)
            for choice in doc.get("choices") or ():
                if isinstance(choice, dict):
                    tally_chat_delta(choice, tally, "message")
            tally.finish()
        return Reply(resp.status, body=raw, usage=usage)

    def _error_in_body(self, call: Call, doc: dict[str, Any]) -> Reply:
        """Some compatible providers (OpenRouter) answer 200 with an error object."""
        err = doc["error"] if isinstance(doc["error"], dict) else {"message": str(doc["error"])}
        code = err.get("code")
        message = str(err.get("message") or "provider error")
        if isinstance(code, int) and 400 <= code < 500 and code != 429:
            return Reply(code, body=client_error(call.route, code, message))
        raise UpstreamError(f"{self.name}: {message}", code if isinstance(code, int) else 502, retryable=True)

    async def _stream(self, call: Call, resp: aiohttp.ClientResponse) -> Reply:
        usage = Usage()
        tally = Tally(usage, call.input_tokens_bound)

        def step(item: bytes | SSEEvent | None) -> tuple[list[bytes], bool]:
            if item is None:
                raise StreamFault("the stream ended before data: [DONE]")
            # A plain `data: {...}` event arrives as its exact bytes (see SSEFramer): it is
            # relayed as is, without decoding it to text and writing it back out.
            if isinstance(item, bytes):
                data, frame = item[6:-2], item
            else:
                data, frame = item.data.encode(), b""
            if data.strip() == b"[DONE]":
                return [DONE_FRAME], True
            # Every event is still parsed (0.5 us): a malformed or error event ends the
            # stream exactly as before, and the output is counted for the no-usage case.
            doc = _event_doc(data)
            if doc.get("error"):
                err = doc["error"]
                raise StreamFault(str(err.get("message") if isinstance(err, dict) else err))
            report = doc.get("usage")
            if isinstance(report, dict):
                self.read_usage(report, usage)
                tally.input_known = tally.output_known = True
            choices = doc.get("choices")
            if not choices and isinstance(report, dict) and not call.client_wants_usage:
                return [], False  # the usage chunk we asked for on our own account
            for choice in choices or ():
                if isinstance(choice, dict):
                    tally_chat_delta(choice, tally)
            return [frame or reframe(item)], False  # type: ignore[arg-type]  # item is an SSEEvent here

        stream = await self.open_stream(resp, tally, step, batches=sse_frame_batches(resp.content))
        return Reply(resp.status, content_type="text/event-stream", chunks=stream, usage=usage)


def _event_doc(data: bytes) -> dict[str, Any]:
    """An event's data as a JSON object, or a StreamFault (as `parse_event_json` words it)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StreamFault(f"unreadable event data {data.decode('utf-8', 'replace')[:80]!r}") from exc
    if not isinstance(doc, dict):
        raise StreamFault(f"event data is not an object: {data.decode('utf-8', 'replace')[:80]!r}")
    return doc
