"""The bare pass-through proxy: p402's server and client libraries with no policy at all.

uvicorn (httptools, uvloop) runs a raw ASGI app that reads the body, POSTs it
to the upstream over one pooled aiohttp session, and relays status, content
type and body (streams chunk by chunk). No JSON parsing, no auth, no ledger:
it is the practical floor for any Python gateway on this machine, and the
yardstick for "what does p402's policy cost".

    python -m benchmarks.bare_proxy --port 9200 --upstream http://127.0.0.1:9100
"""

from __future__ import annotations

import argparse
from typing import Any, Awaitable, Callable

import aiohttp

__all__ = ["BareProxy", "main"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
MAX_CONNECTIONS = 4096  # more than any phase's concurrency, so the pool never queues


class BareProxy:
    """ASGI app forwarding every POST to `upstream` + path."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS))
                    await send({"type": "lifespan.startup.complete"})
                else:
                    if self.session is not None:
                        await self.session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.session is not None
        parts = []
        while True:
            msg = await receive()
            parts.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        async with self.session.post(self.upstream + scope["path"], data=b"".join(parts),
                                     headers={"content-type": "application/json"}) as resp:
            ctype = resp.headers.get("content-type", "application/json").encode()
            if ctype.startswith(b"text/event-stream"):
                await send({"type": "http.response.start", "status": resp.status,
                            "headers": [(b"content-type", ctype), (b"cache-control", b"no-cache")]})
                async for chunk in resp.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            body = await resp.read()
            await send({"type": "http.response.start", "status": resp.status,
                        "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="bare pass-through proxy (no policy) for the p402 benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9100")
    args = parser.parse_args(argv)
    import uvicorn

    # The same server settings as `p402 serve`: one process, uvloop, httptools, no access log.
    uvicorn.run(BareProxy(args.upstream), host=args.host, port=args.port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, lifespan="on", backlog=4096)


if __name__ == "__main__":
    main()
