"""The load generator: raw asyncio connections with httptools' response parser, on uvloop.

A request is pre-built bytes sent on a keep-alive connection; the parser's
callbacks timestamp the first body byte (time to first byte, for streams) and
the end of the response. Per request that costs the generator a few tens of
microseconds, far less than any proxy under test (docs/benchmarks.md gives the
measured ceiling: the generator against the fake upstream alone).

Three shapes of load:
- `closed_loop`: N connections, each sends its next request when the last
  one is answered (concurrency 1 for latency, 64/256 for saturation).
- `paced`: open loop at a fixed rate; latency is measured from each request's
  *scheduled* start, so a stalled server cannot hide its queue (no
  coordinated omission).
- `hold_streams`: N streaming requests at once, each on its own connection
  (the memory phase).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Sequence

import httptools

__all__ = ["Sample", "build_request", "closed_loop", "paced", "hold_streams", "percentile", "summarize"]

_NS = 1_000_000_000


def build_request(host: str, port: int, path: str, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """An HTTP/1.1 keep-alive POST, ready to write."""
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Sample:
    """What one phase measured. Times are nanoseconds."""

    latencies: list[int] = field(default_factory=list)
    ttfb: list[int] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    elapsed_s: float = 0.0
    bytes_in: int = 0

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0


class _Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, int, int, int]] | None = None
        self.first = 0
        self.size = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed mid-response"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)

    def on_body(self, body: bytes) -> None:
        if not self.first:
            self.first = time.perf_counter_ns()
        self.size += len(body)

    def on_message_complete(self) -> None:
        done = time.perf_counter_ns()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), self.first or done, done, self.size))

    def send(self, data: bytes) -> asyncio.Future[tuple[int, int, int, int]]:
        assert self.transport is not None
        self.first, self.size = 0, 0
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(host: str, port: int) -> _Conn:
    _, conn = await asyncio.get_running_loop().create_connection(_Conn, host, port)
    return conn


async def _exchange(conn: _Conn, data: bytes, start_ns: int, sample: Sample, record: bool) -> bool:
    """Send one request; record it; False when the connection must be replaced."""
    try:
        status, first, done, size = await conn.send(data)
    except (ConnectionError, httptools.HttpParserError, OSError):
        sample.errors += record
        return False
    if record:
        sample.latencies.append(done - start_ns)
        sample.ttfb.append(first - start_ns)
        sample.statuses[status] = sample.statuses.get(status, 0) + 1
        sample.bytes_in += size
    return not conn.closed and bool(conn.parser.should_keep_alive())


async def closed_loop(host: str, port: int, requests: Sequence[bytes], concurrency: int, duration_s: float,
                      warmup_s: float = 1.0) -> Sample:
    """`concurrency` connections, back to back, for `duration_s` after `warmup_s`."""
    sample = Sample()
    counter = iter(range(1 << 62))
    t_start = time.perf_counter()
    t_record = t_start + warmup_s
    t_end = t_record + duration_s

    async def worker() -> None:
        conn = await _connect(host, port)
        try:
            while True:
                now = time.perf_counter()
                if now >= t_end:
                    return
                data = requests[next(counter) % len(requests)]
                if not await _exchange(conn, data, time.perf_counter_ns(), sample, now >= t_record):
                    conn.close()
                    conn = await _connect(host, port)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    sample.elapsed_s = time.perf_counter() - t_record
    return sample


async def paced(host: str, port: int, requests: Sequence[bytes], rate: float, duration_s: float,
                warmup_s: float = 1.0, pool: int = 16) -> Sample:
    """Open loop: one request every 1/rate seconds, whatever the server does.

    Sends never wait for answers (a slow server gets more connections), so a
    stalled server cannot slow the arrivals down and hide its queue. Latency
    is taken from the moment each request is written: the event loop's timers
    have millisecond granularity, and counting that jitter would charge the
    generator's lateness to the server.
    """
    sample = Sample()
    idle: list[_Conn] = list(await asyncio.gather(*(_connect(host, port) for _ in range(pool))))
    pending: set[asyncio.Task[None]] = set()
    interval_ns = int(_NS / rate)
    t0 = time.perf_counter_ns()
    warm_ns, total = int(warmup_s * _NS), int((warmup_s + duration_s) * rate)

    async def one(data: bytes, record: bool) -> None:
        conn = idle.pop() if idle else await _connect(host, port)
        if await _exchange(conn, data, time.perf_counter_ns(), sample, record):
            idle.append(conn)
        else:
            conn.close()

    for i in range(total):
        scheduled = t0 + i * interval_ns
        delay = (scheduled - time.perf_counter_ns()) / _NS
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(one(requests[i % len(requests)], scheduled - t0 >= warm_ns))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    sample.elapsed_s = duration_s
    for conn in idle:
        conn.close()
    return sample


async def hold_streams(host: str, port: int, requests: Sequence[bytes], count: int) -> Sample:
    """`count` streaming requests at once, each on a fresh connection; returns when all are done."""
    sample = Sample()
    t0 = time.perf_counter()
    conns = await asyncio.gather(*(_connect(host, port) for _ in range(count)), return_exceptions=True)
    live = [c for c in conns if isinstance(c, _Conn)]
    sample.errors += count - len(live)
    start = time.perf_counter_ns()
    await asyncio.gather(*(_exchange(c, requests[i % len(requests)], start, sample, True)
                           for i, c in enumerate(live)))
    for c in live:
        c.close()
    sample.elapsed_s = time.perf_counter() - t0
    return sample


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of an ascending sequence (q in 0..100, at most 3 decimals)."""
    if not sorted_values:
        return 0
    n = len(sorted_values)
    rank = -(-round(q * 1000) * n // 100_000)  # ceil(q / 100 * n), on integers so p99.9 is exact
    return sorted_values[min(max(rank, 1), n) - 1]


def summarize(sample: Sample) -> dict[str, object]:
    """Percentiles in milliseconds, throughput and status counts, as the JSON result holds them."""
    lat, ttfb = sorted(sample.latencies), sorted(sample.ttfb)

    def ms(values: list[int], q: float) -> float:
        return round(percentile(values, q) / 1e6, 4)

    return {"requests": len(lat), "ok": sample.ok, "errors": sample.errors + len(lat) - sample.ok,
            "rps": round(sample.rps, 1), "statuses": {str(k): v for k, v in sorted(sample.statuses.items())},
            "latency_ms": {"p50": ms(lat, 50), "p90": ms(lat, 90), "p99": ms(lat, 99), "p999": ms(lat, 99.9),
                           "max": round(lat[-1] / 1e6, 4) if lat else 0.0},
            "ttfb_ms": {"p50": ms(ttfb, 50), "p90": ms(ttfb, 90), "p99": ms(ttfb, 99), "p999": ms(ttfb, 99.9)}}
