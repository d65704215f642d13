"""A fast fake OpenAI-compatible upstream: raw asyncio protocol, httptools parser, uvloop.

It answers `POST /v1/chat/completions` (and `/chat/completions`) like the
OpenAI API: a JSON completion with `usage`, or, with `stream: true`, an SSE
stream of `chat.completion.chunk` events, the usage chunk (`choices: []`) when
`stream_options.include_usage` is set, then `data: [DONE]`. Answers are built
once per (model, output size) and cached, so the upstream costs a few tens of
microseconds per request and is never what a measurement sees.

A model whose name starts with `slow` streams one chunk every
`--slow-interval-ms`: the memory phase uses it to hold 1,000 streams open.

    python -m benchmarks.fake_upstream --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import httptools
import orjson

__all__ = ["FakeUpstream", "serve", "COMPLETION_TOKENS", "PROMPT_TOKENS", "main"]

COMPLETION_TOKENS = 16  # output tokens of every answer (fewer when max_tokens is smaller)
PROMPT_TOKENS = 24  # what the fake reports as the prompt's size
_WORDS = ("Budgets", " are", " decided", " before", " the", " call", ",", " not", " after", " it", ".")
_CREATED = 1_700_000_000
_CHAT_PATHS = (b"/v1/chat/completions", b"/chat/completions")


def _usage(completion: int) -> dict[str, int]:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion}


def completion_body(model: str, n: int) -> bytes:
    text = "".join(_WORDS[i % len(_WORDS)] for i in range(n))
    return orjson.dumps({"id": "chatcmpl-fake", "object": "chat.completion", "created": _CREATED, "model": model,
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": "stop" if n >= COMPLETION_TOKENS else "length"}],
                         "usage": _usage(n)})


def stream_events(model: str, n: int, usage: bool) -> list[bytes]:
    """The SSE frames of one streamed answer, each already chunk-encoded for HTTP/1.1."""
    def chunk(choices: list[Any], **extra: Any) -> bytes:
        doc = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": _CREATED, "model": model,
               "choices": choices, **extra}
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    frames = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    frames += [chunk([{"index": 0, "delta": {"content": _WORDS[i % len(_WORDS)]}, "finish_reason": None}])
               for i in range(n)]
    frames.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop" if n >= COMPLETION_TOKENS else "length"}]))
    if usage:
        frames.append(chunk([], usage=_usage(n)))
    frames.append(b"data: [DONE]\n\n")
    return [b"%x\r\n%s\r\n" % (len(f), f) for f in frames] + [b"0\r\n\r\n"]


_STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                b"transfer-encoding: chunked\r\n\r\n")


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, server: FakeUpstream) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url, raw = self.url, b"".join(self.body)
        self.url, self.body = b"", []
        if url.split(b"?", 1)[0] not in _CHAT_PATHS:
            self._write(b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
            return
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            return
        model = str(doc.get("model") or "fake")
        limit = doc.get("max_completion_tokens") or doc.get("max_tokens") or COMPLETION_TOKENS
        n = min(int(limit), COMPLETION_TOKENS)
        if doc.get("stream"):
            usage = bool((doc.get("stream_options") or {}).get("include_usage"))
            frames = self.server.stream(model, n, usage)
            if model.startswith("slow"):
                self._write(_STREAM_HEAD)
                self._drip(frames, 0)
            else:
                self._write(_STREAM_HEAD + b"".join(frames))
            return
        body = self.server.whole(model, n)
        self._write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(body), body))

    def _drip(self, frames: list[bytes], i: int) -> None:
        if self.transport is None or i >= len(frames):
            return
        self._write(frames[i])
        asyncio.get_running_loop().call_later(self.server.slow_interval_s, self._drip, frames, i + 1)

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)


class FakeUpstream:
    """The server: caches of pre-built answers and the slow-stream pace."""

    def __init__(self, slow_interval_s: float = 0.1, slow_chunks: int = 30) -> None:
        self.slow_interval_s = slow_interval_s
        self.slow_chunks = slow_chunks
        self._whole: dict[tuple[str, int], bytes] = {}
        self._stream: dict[tuple[str, int, bool], list[bytes]] = {}

    def whole(self, model: str, n: int) -> bytes:
        key = (model, n)
        body = self._whole.get(key)
        if body is None:
            body = self._whole[key] = completion_body(model, n)
        return body

    def stream(self, model: str, n: int, usage: bool) -> list[bytes]:
        if model.startswith("slow"):
            n = self.slow_chunks  # the memory phase wants long-lived streams
        key = (model, n, usage)
        frames = self._stream.get(key)
        if frames is None:
            frames = self._stream[key] = stream_events(model, n, usage)
        return frames

    def protocol(self) -> _Conn:
        return _Conn(self)


async def serve(host: str, port: int, upstream: FakeUpstream | None = None) -> asyncio.AbstractServer:
    """Start listening; returns the asyncio server (port 0 picks a free port)."""
    upstream = upstream or FakeUpstream()
    loop = asyncio.get_running_loop()
    return await loop.create_server(upstream.protocol, host, port, backlog=4096, reuse_address=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fake OpenAI-compatible upstream for the p402 benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slow-interval-ms", type=float, default=100.0)
    parser.add_argument("--slow-chunks", type=int, default=30)
    args = parser.parse_args(argv)
    import uvloop

    async def run() -> None:
        server = await serve(args.host, args.port, FakeUpstream(args.slow_interval_ms / 1000, args.slow_chunks))
        print(f"fake upstream listening on {args.host}:{args.port} (pid {os.getpid()})", flush=True)
        async with server:
            await server.serve_forever()

    uvloop.run(run())


if __name__ == "__main__":
    main()
