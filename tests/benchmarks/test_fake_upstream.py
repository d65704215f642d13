"""The fake upstream speaks OpenAI's wire format: the official SDK reads its answers and streams."""

from __future__ import annotations

import asyncio
from typing import Any

from openai import AsyncOpenAI

from benchmarks.fake_upstream import COMPLETION_TOKENS, PROMPT_TOKENS, FakeUpstream, serve


async def _with_upstream(fn: Any, upstream: FakeUpstream | None = None) -> Any:
    server = await serve("127.0.0.1", 0, upstream)
    port = server.sockets[0].getsockname()[1]
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0)
    try:
        return await fn(client)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


def test_a_completion_carries_the_text_and_the_usage_the_sdk_reads() -> None:
    async def call(client: AsyncOpenAI) -> Any:
        return await client.chat.completions.create(model="gpt-4o-mini", max_tokens=5,
                                                    messages=[{"role": "user", "content": "hi"}])
    reply = asyncio.run(_with_upstream(call))
    assert reply.model == "gpt-4o-mini"
    assert reply.choices[0].message.content == "Budgets are decided before the"
    assert reply.choices[0].finish_reason == "length"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (PROMPT_TOKENS, 5)


def test_a_stream_ends_with_the_usage_chunk_when_asked_then_done() -> None:
    async def call(client: AsyncOpenAI) -> list[Any]:
        stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                      stream_options={"include_usage": True},
                                                      messages=[{"role": "user", "content": "hi"}])
        return [chunk async for chunk in stream]
    chunks = asyncio.run(_with_upstream(call))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) > 5 and text.startswith("Budgets are decided")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == COMPLETION_TOKENS
    assert all(c.usage is None for c in chunks[:-1])


def test_without_include_usage_no_usage_chunk_is_sent() -> None:
    async def call(client: AsyncOpenAI) -> list[Any]:
        stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True, max_tokens=2,
                                                      messages=[{"role": "user", "content": "hi"}])
        return [chunk async for chunk in stream]
    chunks = asyncio.run(_with_upstream(call))
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Budgets are"


def test_slow_models_drip_their_stream_at_the_configured_pace() -> None:
    async def call(client: AsyncOpenAI) -> int:
        stream = await client.chat.completions.create(model="slow-gpt-4o-mini", stream=True,
                                                      messages=[{"role": "user", "content": "hi"}])
        return len([c async for c in stream if c.choices and c.choices[0].delta.content])
    # 5 content chunks (the slow stream's length), each one interval apart.
    assert asyncio.run(_with_upstream(call, FakeUpstream(slow_interval_s=0.001, slow_chunks=5))) == 5
