"""The bare proxy relays answers and streams unchanged (it is the yardstick, so it must be correct)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from openai import AsyncOpenAI

from benchmarks.bare_proxy import BareProxy
from benchmarks.fake_upstream import serve
from p402.cli.serve import run_server


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _through_proxy(fn: Any) -> Any:
    upstream = await serve("127.0.0.1", 0)
    up_port = upstream.sockets[0].getsockname()[1]
    port = _port()
    server, task = await run_server(BareProxy(f"http://127.0.0.1:{up_port}"), "127.0.0.1", port)
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0)
    try:
        return await fn(client)
    finally:
        await client.close()
        server.should_exit = True
        await task
        upstream.close()
        await upstream.wait_closed()


def test_the_bare_proxy_relays_a_completion() -> None:
    async def call(client: AsyncOpenAI) -> Any:
        return await client.chat.completions.create(model="gpt-4o-mini", max_tokens=3,
                                                    messages=[{"role": "user", "content": "hi"}])
    reply = asyncio.run(_through_proxy(call))
    assert reply.choices[0].message.content == "Budgets are decided"
    assert reply.usage.completion_tokens == 3


def test_the_bare_proxy_relays_a_stream_to_its_end() -> None:
    async def call(client: AsyncOpenAI) -> list[Any]:
        stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True, max_tokens=4,
                                                      stream_options={"include_usage": True},
                                                      messages=[{"role": "user", "content": "hi"}])
        return [c async for c in stream]
    chunks = asyncio.run(_through_proxy(call))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Budgets are decided before"
    assert chunks[-1].usage.completion_tokens == 4
