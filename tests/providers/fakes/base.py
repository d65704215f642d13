"""What every fake provider shares: a loopback aiohttp server, request recording, fault injection.

A fake speaks its provider's real wire format (see each module) and can be told
to misbehave the ways real providers do, through `fake.faults`:

- `status`: answer every request with this HTTP status and the provider's error body;
- `hang`: accept the request and never answer (until `stop()`);
- `reset_before`: drop the connection before sending a byte;
- `break_after=N`: in a stream, drop the connection after N content events;
- `malformed_after=N`: in a stream, send an unreadable event after N content events;
- `error_event_after=N`: in a stream, send the provider's in-band error event after N content events;
- `endless`: stream content until the client goes away (`client_gone` is then set).

`sent_text` is the content a fake has put on the wire so far, `requests` every
request it received (path, headers, JSON body).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from aiohttp import web

__all__ = ["FakeServer", "Faults", "Recorded", "split_words"]


def split_words(text: str) -> list[str]:
    """Text as the stream pieces a model would send: words with their leading space."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


@dataclass
class Faults:
    status: int | None = None
    message: str = "something went wrong"
    hang: bool = False
    reset_before: bool = False
    break_after: int | None = None
    malformed_after: int | None = None
    error_event_after: int | None = None
    endless: bool = False
    chunk_delay_s: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    json: Any = field(default=None)


class FakeServer:
    """Base of the fakes: start() -> base_url, stop(), and the stream writer with faults."""

    base_path = ""

    def __init__(self) -> None:
        self.faults = Faults()
        self.requests: list[Recorded] = []
        self.sent_text = ""
        self.client_gone: asyncio.Event | None = None
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle --------------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def start(self) -> str:
        self.client_gone = asyncio.Event()
        self._release = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]
        return self.base_url

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_path}"

    async def stop(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- helpers for handlers -----------------------------------------------------------------------------

    async def record(self, request: web.Request) -> Recorded:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        rec = Recorded(request.method, request.path, dict(request.query), dict(request.headers), raw, body)
        self.requests.append(rec)
        return rec

    def error_response(self, status: int, message: str) -> web.Response:
        """The provider's own error body for `status` (each fake overrides)."""
        raise NotImplementedError

    async def before_answer(self, request: web.Request) -> web.StreamResponse | None:
        """Apply the faults that strike before the first byte; None to answer normally."""
        f = self.faults
        if f.reset_before:
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # nothing more to do on a dead connection
        if f.hang:
            assert self._release is not None
            await asyncio.wait_for(self._release.wait(), 30)
            return web.Response(status=599)
        if f.status is not None:
            return self.error_response(f.status, f.message)
        return None

    async def write_stream(self, request: web.Request, head: list[bytes], content: list[tuple[bytes, str]],
                           tail: list[bytes], *, content_type: str = "text/event-stream",
                           garbage: bytes = b"data: {\"choices\": [{\"delta\": {\"content\n\n",
                           error_frame: Callable[[], bytes] | None = None,
                           more: Callable[[int], tuple[bytes, str]] | None = None) -> web.StreamResponse:
        """Stream `head`, the content frames (each with the text it carries), then `tail`, applying faults."""
        f = self.faults
        resp = web.StreamResponse(status=200, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
        assert self.client_gone is not None
        finished = False
        try:
            await resp.prepare(request)
            for frame in head:
                await resp.write(frame)
            i = 0
            while True:
                if i < len(content):
                    frame, text = content[i]
                elif f.endless and more is not None:
                    frame, text = more(i)
                else:
                    break
                if f.break_after == i:
                    assert request.transport is not None
                    request.transport.abort()
                    finished = True
                    return resp
                if f.malformed_after == i:
                    await resp.write(garbage)
                    await resp.write_eof()
                    finished = True
                    return resp
                if f.error_event_after == i and error_frame is not None:
                    await resp.write(error_frame())
                    await resp.write_eof()
                    finished = True
                    return resp
                await resp.write(frame)
                self.sent_text += text
                i += 1
                if f.chunk_delay_s or f.endless:
                    await asyncio.sleep(f.chunk_delay_s or 0.005)
            for frame in tail:
                await resp.write(frame)
            await resp.write_eof()
            finished = True
            return resp
        finally:
            if not finished:
                self.client_gone.set()  # a write failed or the handler was cancelled: the client left
