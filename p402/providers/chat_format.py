"""The pieces of OpenAI's Chat Completions wire format that every translator writes.

Adapters for providers that speak another format (Anthropic, Gemini, Bedrock)
answer a chat client with these: the usage object, and the chunk frames of a
stream (role first, then deltas, then the finish chunk, the usage-only chunk
when the client asked for it, and `data: [DONE]`).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import orjson

from p402.pipeline.ports import Usage
from p402.providers.sse import DONE_FRAME, data_frame

__all__ = ["RequestUnfit", "translation", "chat_usage_view", "ChunkFrames", "completion", "parse_arguments", "text_of"]


class RequestUnfit(Exception):
    """A request an adapter cannot translate for its provider: a field of a shape it does not take.
    The client gets a 400 (the request's fields are checked first, by name: p402.web.shapes; this
    is for what those checks let through)."""


def translation(build: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Mark a request translator: what it fails on is the request's fault (a 400), not the gateway's."""
    @functools.wraps(build)
    def translate(body: dict[str, Any], *args: Any) -> dict[str, Any]:
        try:
            return build(body, *args)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            raise RequestUnfit(f"the request cannot be translated for this provider: a field has a shape "
                               f"it does not take ({type(exc).__name__}: {exc})") from None
    return translate


def chat_usage_view(usage: Usage) -> dict[str, Any]:
    """Our usage in OpenAI's shape (prompt tokens include the cached ones, as OpenAI counts)."""
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return {"prompt_tokens": prompt, "completion_tokens": usage.output_tokens,
            "total_tokens": prompt + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens}}


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the `text` parts of a list of parts (OpenAI)
    or blocks (Anthropic), which share that shape."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """A tool call's JSON arguments as an object ({} when the model wrote something unparsable)."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def completion(response_id: str, model: str, text: str, tool_calls: list[dict[str, Any]], finish: str,
               usage: Usage) -> dict[str, Any]:
    """A whole `chat.completion` object with one choice."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": response_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": chat_usage_view(usage)}


class ChunkFrames:
    """Writes the `chat.completion.chunk` frames of one stream."""

    def __init__(self, usage: Usage, client_wants_usage: bool, model: str) -> None:
        self.usage = usage
        self.wants_usage = client_wants_usage
        self.model = model
        self.id = f"chatcmpl-p402{time.time_ns()}"
        self.created = int(time.time())

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return data_frame({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                           "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                             "finish_reason": finish}]})

    def role(self) -> bytes:
        return self.chunk({"role": "assistant", "content": ""})

    def text(self, text: str) -> bytes:
        return self.chunk({"content": text})

    def tool_start(self, index: int, call_id: str, name: str, arguments: str = "") -> bytes:
        return self.chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                           "function": {"name": name, "arguments": arguments}}]})

    def tool_arguments(self, index: int, arguments: str) -> bytes:
        return self.chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})

    def end(self, finish: str) -> list[bytes]:
        """The finish chunk, the usage chunk if the client asked for it, and `[DONE]`."""
        out = [self.chunk({}, finish)]
        if self.wants_usage:
            out.append(data_frame({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                   "model": self.model, "choices": [], "usage": chat_usage_view(self.usage)}))
        return out + [DONE_FRAME]
