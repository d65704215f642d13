"""The load generator counts what the server answered, times first bytes and ends, and paces honestly."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from benchmarks import loadgen
from benchmarks.fake_upstream import FakeUpstream, serve
from benchmarks.org import chat_body


@pytest.mark.parametrize("q, expected", [(50, 50), (99, 99), (99.9, 100), (100, 100), (0, 1), (1, 1)])
def test_percentile_is_the_nearest_rank(q: float, expected: int) -> None:
    values = list(range(1, 101))  # 1..100
    assert loadgen.percentile(values, q) == expected


def test_percentile_of_a_thousand_values_keeps_p999_exact() -> None:
    values = list(range(1, 1001))
    assert loadgen.percentile(values, 99.9) == 999
    assert loadgen.percentile([], 50) == 0


async def _against_upstream(fn, upstream: FakeUpstream | None = None):  # type: ignore[no-untyped-def]
    server = await serve("127.0.0.1", 0, upstream)
    port = server.sockets[0].getsockname()[1]
    try:
        return await fn(port)
    finally:
        server.close()
        await server.wait_closed()


def _requests(port: int, stream: bool = False, path: str = "/v1/chat/completions") -> list[bytes]:
    return [loadgen.build_request("127.0.0.1", port, path, orjson.dumps(chat_body(stream=stream)),
                                  [("Authorization", "Bearer sk-x")])]


def test_closed_loop_counts_every_answer_and_first_bytes_come_before_ends() -> None:
    sample = asyncio.run(_against_upstream(
        lambda port: loadgen.closed_loop("127.0.0.1", port, _requests(port, stream=True), 4, 0.3, 0.05)))
    assert sample.ok > 0 and sample.statuses == {200: sample.ok} and sample.errors == 0
    assert len(sample.latencies) == len(sample.ttfb) == sample.ok
    assert all(0 < f <= d for f, d in zip(sample.ttfb, sample.latencies))
    summary = loadgen.summarize(sample)
    assert summary["ok"] == sample.ok and summary["errors"] == 0
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"] <= summary["latency_ms"]["max"]


def test_closed_loop_reports_error_statuses_as_errors() -> None:
    sample = asyncio.run(_against_upstream(
        lambda port: loadgen.closed_loop("127.0.0.1", port, _requests(port, path="/nope"), 2, 0.2, 0.0)))
    assert set(sample.statuses) == {404}
    assert loadgen.summarize(sample)["errors"] == len(sample.latencies) > 0


def test_paced_sends_rate_times_duration_requests_whatever_the_server_does() -> None:
    sample = asyncio.run(_against_upstream(
        lambda port: loadgen.paced("127.0.0.1", port, _requests(port), 100, 0.5, 0.1, pool=2)))
    assert len(sample.latencies) == 50  # 100/s for 0.5 s after the warmup, each answered
    assert sample.ok == 50


def test_hold_streams_keeps_all_streams_open_together() -> None:
    upstream = FakeUpstream(slow_interval_s=0.01, slow_chunks=5)
    body = orjson.dumps(chat_body("slow-model", stream=True))

    async def hold(port: int) -> loadgen.Sample:
        req = [loadgen.build_request("127.0.0.1", port, "/v1/chat/completions", body)]
        return await loadgen.hold_streams("127.0.0.1", port, req, 50)

    sample = asyncio.run(_against_upstream(hold, upstream))
    assert sample.ok == 50 and sample.errors == 0
    # Each stream drips 8 frames 10 ms apart; held together, the whole lot takes about one stream's time.
    assert min(sample.latencies) >= 50_000_000
