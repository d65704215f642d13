"""A stream the client never starts reading: the edge closes it, and the hold is settled once.

Driven at the gateway itself (the edge cannot be made to close a stream before its first
read from outside: the socket tests in tests/web/test_failures.py cut it later)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from p402.pipeline.gateway import Admitted, Inbound
from p402.wiring import build_runtime
from tests.gatewaykit import SECRETS, config_of, org


def test_a_stream_closed_before_its_first_chunk_is_settled_once_and_leaves_no_hold(tmp_path: Path) -> None:
    async def scenario() -> list[dict[str, object]]:
        runtime = await build_runtime(config_of(org(tmp_path)))
        try:
            key = await runtime.gateway.authenticate(SECRETS["alice"], "chat")
            body = {"model": "gpt-4o-mini", "stream": True, "max_tokens": 20,
                    "messages": [{"role": "user", "content": "hello"}]}
            admitted = await runtime.gateway.handle(Inbound("chat", body, key, {}, None, time.perf_counter()))
            assert isinstance(admitted, Admitted) and admitted.close is not None
            assert await runtime.store.live_holds() == 1
            await admitted.close()  # the client left before the first chunk was read
            await admitted.close()  # and closing twice settles nothing twice
            assert await runtime.store.live_holds() == 0
            return [orjson.loads(row.body) for row in runtime.store.chain()]
        finally:
            await runtime.close()

    rows = asyncio.run(scenario())
    ends = [r for r in rows if r["kind"] in ("settle", "release", "expire", "late_settle")]
    assert len(ends) == 1 and ends[0]["status"] == "client_disconnected"
