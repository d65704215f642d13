"""Small helpers for the provider tests: run async code, build calls, read streams."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, TypeVar

import orjson

from p402.pipeline.ports import Call, Reply
from p402.providers.sse import SSEDecoder, SSEEvent

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def chat_call(body: dict[str, Any], *, stream: bool = False, wants_usage: bool = False, bound: int = 0,
              timeout_s: float = 600.0) -> Call:
    body = {"model": "gpt-4o-mini", **body}
    if stream:
        body["stream"] = True
        if wants_usage:
            body["stream_options"] = {"include_usage": True}
    return Call(route="chat", body=body, stream=stream, upstream_model=str(body["model"]),
                client_wants_usage=wants_usage, timeout_s=timeout_s, input_tokens_bound=bound)


def messages_call(body: dict[str, Any], *, stream: bool = False, bound: int = 0) -> Call:
    body = {"max_tokens": 256, **body}
    if stream:
        body["stream"] = True
    return Call(route="messages", body=body, stream=stream, upstream_model=str(body["model"]),
                input_tokens_bound=bound)


async def drain(reply: Reply) -> bytes:
    assert reply.chunks is not None
    out = b""
    async for chunk in reply.chunks:
        out += chunk
    return out


async def close(reply: Reply) -> None:
    """What the gateway does when its client goes away mid-stream."""
    aclose = getattr(reply.chunks, "aclose")
    await aclose()


async def take(reply: Reply, n: int) -> list[bytes]:
    """The first `n` chunks of a stream (without closing it)."""
    assert reply.chunks is not None
    out = []
    for _ in range(n):
        out.append(await reply.chunks.__anext__())
    return out


def events(raw: bytes) -> list[SSEEvent]:
    return SSEDecoder().feed(raw)


def payloads(raw: bytes) -> list[Any]:
    """The JSON of every event (`[DONE]` kept as the string)."""
    out: list[Any] = []
    for e in events(raw):
        out.append(e.data if e.data == "[DONE]" else orjson.loads(e.data))
    return out


def chat_text(raw: bytes) -> str:
    """The assistant text of an OpenAI chunk stream."""
    text = ""
    for p in payloads(raw):
        if isinstance(p, dict):
            for c in p.get("choices") or ():
                text += (c.get("delta") or {}).get("content") or ""
    return text


def chat_stream_text_from_chunks(chunks: list[bytes]) -> str:
    return chat_text(b"".join(chunks))
