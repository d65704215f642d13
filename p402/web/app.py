"""The ASGI application: routes client, admin, dashboard and operational paths.

Client routes are dispatched by exact path to raw ASGI handlers (no framework
on the hot path); admin and dashboard are Starlette apps mounted by prefix.
The runtime is built in the lifespan startup, inside the server's event loop.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any, Awaitable, Callable

import orjson

from p402.config import Config, load_config
from p402.errors import P402Error, StoreUnavailable
from p402.web.client import ROUTES, ClientRoutes
from p402.web.metrics import CONTENT_TYPE_LATEST

__all__ = ["GatewayApp", "factory"]

log = logging.getLogger("p402")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_CLIENT_PATHS = {k.decode() for k in ROUTES} | {"/v1/models"}


class GatewayApp:
    """The whole gateway as one ASGI callable."""

    def __init__(self, config: Config, runtime: Any = None, apply: bool = True, server: bool = False) -> None:
        """`server`: this process is the gateway (`p402 serve`), not a library user or a test."""
        self.config, self.runtime, self.apply, self.server = config, runtime, apply, server
        self.client: ClientRoutes | None = None
        self.admin: Any = None
        self.dashboard: Any = None
        if runtime is not None:
            self._mount(runtime)

    def _mount(self, runtime: Any) -> None:
        from p402.web.admin import admin_app
        self.runtime = runtime
        self.client = ClientRoutes(runtime.gateway, lambda: runtime.policies.current, runtime.config.max_body_bytes,
                                   runtime.metrics.request)
        self.admin = admin_app(runtime)
        try:
            from p402.web.dashboard import dashboard_app
        except ImportError:
            self.dashboard = None
        else:
            self.dashboard = dashboard_app(runtime)

    async def startup(self) -> None:
        if self.runtime is None:
            from p402.wiring import build_runtime
            self._mount(await build_runtime(self.config, apply=self.apply))
        self.runtime.start_background()
        if self.server:
            # Everything built so far (policy, 1000s of keys, modules) lives as long as the process:
            # out of the collector's sight, a full collection walks only what requests create.
            # Without this, full collections of 20-50 ms came every few thousand requests
            # (measured: docs/benchmarks.md).
            gc.collect()
            gc.freeze()

    async def shutdown(self) -> None:
        if self.runtime is not None:
            await self.runtime.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        if path in _CLIENT_PATHS:
            assert self.client is not None
            await self.client(scope, receive, send)
        elif path.startswith("/admin/v1/"):
            await self.admin({**scope, "path": path[len("/admin/v1"):], "root_path": "/admin/v1"}, receive, send)
        elif path.startswith("/dashboard") and self.dashboard is not None:
            await self.dashboard(scope, receive, send)
        elif path == "/healthz":
            await _plain(send, 200, b'{"status":"ok"}')
        elif path == "/readyz":
            try:
                await self.runtime.store.ping()
                await _plain(send, 200, b'{"status":"ready"}')
            except StoreUnavailable as exc:
                # Unauthenticated: the store's address and error go to the log, not to whoever asks.
                log.warning("readyz: %s", exc)
                await _plain(send, 503, b'{"status":"store unavailable"}')
        elif path == "/metrics":
            await _plain(send, 200, self.runtime.metrics.render(), CONTENT_TYPE_LATEST.encode())
        else:
            await _plain(send, 404, orjson.dumps({"error": {"message": f"no route {path}", "type": "invalid_request_error",
                                                            "param": None, "code": "not_found"}}))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except P402Error as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _plain(send: Send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def factory() -> GatewayApp:
    """For `uvicorn --factory` and worker processes: the config path comes from P402_CONFIG.

    Worker processes do not re-apply the config: `p402 serve` applied it once before starting them.
    """
    return GatewayApp(load_config(os.environ.get("P402_CONFIG", "p402.yaml")),
                      apply=os.environ.get("P402_APPLY", "1") == "1", server=True)
