"""The built-in, deterministic `simulated` provider.

It answers with `min(max_tokens, completion_tokens)` output tokens after
`latency_ms`, and reports usage exactly as the OpenAI API does (streaming
included: the usage chunk with `choices: []` before `[DONE]`). A chat request's
`n` gets n choices, each of that many tokens, and usage counts all of them, as
OpenAI bills them; streamed, their chunks interleave, each naming its choice's
`index`. It speaks the
three client formats natively, so the demo, the tests and the benchmarks need
no network. Input tokens are counted the way the OpenAI API counts them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import time
from typing import Any, AsyncIterator

import orjson

from p402.errors import ConfigError
from p402.pipeline.ports import Call, Reply, Usage
from p402.pipeline.tokens import chat_input_bound, embeddings_input_bound, messages_input_bound

__all__ = ["SimulatedProvider"]

_WORDS = ("Budgets", " are", " decided", " before", " the", " call", ",", " not", " after", " it", ".")
_EMBEDDING_DIM = 16


def _text(n: int) -> list[str]:
    return [_WORDS[i % len(_WORDS)] for i in range(n)]


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


MAX_DELAY_MS = 600_000  # a simulated call slower than 10 minutes is a typo
MAX_COMPLETION_TOKENS = 1_000_000


def _setting(settings: dict[str, Any], provider: str, key: str, default: float, most: float,
             whole: bool = False) -> float:
    value = settings.get(key, default)
    kind = int if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not 0 <= value <= most:
        what = "a whole number" if whole else "a number"
        raise ConfigError(f"providers.{provider}.{key}: expected {what} from 0 to {most:,}, got {value!r}")
    return float(value)


class SimulatedProvider:
    """A deterministic in-process provider (SPEC §5)."""

    routes = frozenset({"chat", "embeddings", "messages"})

    def __init__(self, settings: dict[str, Any] | None = None, name: str = "simulated") -> None:
        settings = settings or {}
        self.name = name
        self.latency_s = _setting(settings, name, "latency_ms", 20, MAX_DELAY_MS) / 1000
        self.completion_tokens = int(_setting(settings, name, "completion_tokens", 32, MAX_COMPLETION_TOKENS,
                                              whole=True))
        # Optional pause between streamed tokens (default none), to mimic a model's generation speed.
        self.stream_delay_s = _setting(settings, name, "stream_delay_ms", 0, MAX_DELAY_MS) / 1000
        self._seq = 0

    async def close(self) -> None:
        return None

    def _id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-sim{self._seq:010d}"

    async def send(self, call: Call) -> Reply:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        body = call.body
        if call.route == "embeddings":
            return self._embeddings(call)
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or self.completion_tokens
        out = min(int(limit), self.completion_tokens)
        truncated = out < self.completion_tokens
        if call.route == "messages":
            usage = Usage(input_tokens=messages_input_bound(body, "o200k_base"))
            if call.stream:
                return Reply(200, "text/event-stream", chunks=self._messages_stream(call, out, truncated, usage), usage=usage)
            usage.output_tokens, usage.reported = out, True
            msg = {"id": self._id("msg"), "type": "message", "role": "assistant", "model": call.upstream_model,
                   "content": [{"type": "text", "text": "".join(_text(out))}],
                   "stop_reason": "max_tokens" if truncated else "end_turn", "stop_sequence": None,
                   "usage": {"input_tokens": usage.input_tokens, "output_tokens": out,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
            return Reply(200, body=orjson.dumps(msg), usage=usage)
        usage = Usage(input_tokens=chat_input_bound(body, "o200k_base"))
        choices = int(body.get("n") or 1)  # the edge checked it is a whole number in range
        if call.stream:
            return Reply(200, "text/event-stream", chunks=self._chat_stream(call, out, truncated, usage, choices),
                         usage=usage)
        usage.output_tokens, usage.reported = out * choices, True
        reply = {"id": self._id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
                 "model": call.upstream_model, "system_fingerprint": "fp_p402sim",
                 "choices": [{"index": i, "message": {"role": "assistant", "content": "".join(_text(out)),
                                                      "refusal": None},
                              "logprobs": None, "finish_reason": "length" if truncated else "stop"}
                             for i in range(choices)],
                 "usage": _openai_usage(usage)}
        return Reply(200, body=orjson.dumps(reply), usage=usage)

    def _embeddings(self, call: Call) -> Reply:
        body = call.body
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)) else list(inputs or [])
        tokens = embeddings_input_bound(body, "o200k_base")
        data = []
        for i, item in enumerate(items):
            seed = hashlib.sha256(orjson.dumps(item)).digest()
            vector = [(b - 128) / 128 for b in seed[:_EMBEDDING_DIM]]
            if body.get("encoding_format") == "base64":
                value: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            else:
                value = vector
            data.append({"object": "embedding", "index": i, "embedding": value})
        usage = Usage(input_tokens=tokens, reported=True)
        out = {"object": "list", "data": data, "model": call.upstream_model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return Reply(200, body=orjson.dumps(out), usage=usage)

    async def _chat_stream(self, call: Call, out: int, truncated: bool, usage: Usage,
                           choices: int = 1) -> AsyncIterator[bytes]:
        ident, created = self._id("chatcmpl"), int(time.time())
        want_usage = call.client_wants_usage

        def chunk(index: int, delta: dict[str, Any], finish: str | None) -> bytes:
            obj: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk", "created": created,
                                   "model": call.upstream_model, "system_fingerprint": "fp_p402sim",
                                   "choices": [{"index": index, "delta": delta, "logprobs": None,
                                                "finish_reason": finish}]}
            if want_usage:
                obj["usage"] = None
            return _sse(obj)

        # As OpenAI streams `n` choices: one choice per chunk, the choices taking turns.
        for i in range(choices):
            yield chunk(i, {"role": "assistant", "content": "", "refusal": None}, None)
        for word in _text(out):
            for i in range(choices):
                usage.output_tokens += 1
                yield chunk(i, {"content": word}, None)
            await asyncio.sleep(self.stream_delay_s)
        usage.reported = True
        for i in range(choices):
            yield chunk(i, {}, "length" if truncated else "stop")
        if want_usage:
            yield _sse({"id": ident, "object": "chat.completion.chunk", "created": created,
                        "model": call.upstream_model, "system_fingerprint": "fp_p402sim", "choices": [],
                        "usage": _openai_usage(usage)})
        yield b"data: [DONE]\n\n"

    async def _messages_stream(self, call: Call, out: int, truncated: bool, usage: Usage) -> AsyncIterator[bytes]:
        message: dict[str, Any] = {"id": self._id("msg"), "type": "message", "role": "assistant", "model": call.upstream_model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": usage.input_tokens, "output_tokens": 1}}
        yield _event("message_start", {"type": "message_start", "message": message})
        yield _event("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "text", "text": ""}})
        for word in _text(out):
            usage.output_tokens += 1
            yield _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "text_delta", "text": word}})
            await asyncio.sleep(self.stream_delay_s)
        yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        usage.reported = True
        yield _event("message_delta", {"type": "message_delta",
                                       "delta": {"stop_reason": "max_tokens" if truncated else "end_turn",
                                                 "stop_sequence": None},
                                       "usage": {"output_tokens": out}})
        yield _event("message_stop", {"type": "message_stop"})


def _openai_usage(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
