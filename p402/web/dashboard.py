"""The live cost dashboard (SPEC §7): `GET /dashboard`, its snapshot API and its event stream.

- `GET /dashboard`: the page (HTML; script and style are separate files, so the
  Content-Security-Policy forbids every inline script).
- `GET /dashboard/api/snapshot`: tiles, totals and recent denials as JSON (first paint, scripts, tests).
- `GET /dashboard/stream`: Server-Sent Events: a `ledger` event per ledger row
  (its `id:` is the row's seq, so a reconnecting browser resumes where it left off),
  a `tiles` event after rows changed spend, `status` when the store comes and goes,
  `dropped` when a slow browser lost rows, and a heartbeat comment every 15 s.
- `GET /dashboard/static/...`: the script, stylesheet and icon (public: they hold no data).

Every role may view it; the admin token comes as `Authorization: Bearer` or `?token=`
(EventSource cannot send headers).
"""

from __future__ import annotations

import asyncio
import hashlib
import html
from importlib import resources
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from p402.errors import StoreUnavailable
from p402.web.admin import ApiError, role_of
from p402.web.dashboard_feed import LedgerFeed, Subscriber, frame
from p402.web.dashboard_view import snapshot, tiles

__all__ = ["dashboard_app", "SECURITY_HEADERS", "HEARTBEAT_S", "STREAM_MAX_S"]

HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
STREAM_MAX_S = 3600.0  # a stream ends after an hour; the browser reconnects and resumes by Last-Event-ID
_TICK_S = 1.0  # how often an idle stream checks for disconnects and server shutdown
_RETRY_MS = 2000  # the browser's reconnect delay

SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # The token may sit in the page's URL; never send that URL to another site.
    "referrer-policy": "no-referrer",
}
_NO_STORE = {**SECURITY_HEADERS, "cache-control": "no-store"}
_STATIC_TYPES = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
_FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" '
            b'fill="#1f3a5f"/><text x="16" y="22" font-family="sans-serif" font-size="16" font-weight="700" '
            b'fill="#fff" text-anchor="middle">$</text></svg>')
_UNAUTHORIZED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>p402 dashboard: sign in</title>
<link rel="stylesheet" href="{root}/dashboard/static/dashboard.css"></head>
<body class="gate"><main class="gate-card"><h1>p402 dashboard</h1>
<p>{problem}.</p>
<p>Open <code>{root}/dashboard?token=&lt;admin token&gt;</code>, or send
<code>Authorization: Bearer &lt;admin token&gt;</code>. Any role (admin, finance, viewer) may view it;
tokens are the <code>admin_tokens</code> of <code>p402.yaml</code>.</p></main></body></html>
"""


def _static(name: str) -> bytes:
    return resources.files("p402.web").joinpath("static", name).read_bytes()


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=_NO_STORE)


def _error(status: int, message: str, code: str) -> Response:
    return _json({"error": {"message": message, "type": "dashboard_error", "param": None, "code": code}}, status)


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id", "")
    # ASCII digits only (str.isdigit also takes "²"), and no longer than a ledger seq can be.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 else None


def _server_stopping(receive: Any, keep_alive_at_start: bool) -> bool:
    """Whether uvicorn has begun a graceful shutdown.

    uvicorn 0.54 sends no ASGI message when it starts shutting down while a
    response streams: it waits for every open response to end before the
    lifespan shutdown, so an endless stream would hold `p402 serve` and
    `p402 demo` open for as long as a browser tab stays open. What it does is
    mark each in-flight request `keep_alive = False`; we read that flag (a
    private attribute of its request cycle, hence the getattr guards) and end
    the stream. A server without the flag still ends streams after `STREAM_MAX_S`.
    """
    cycle = getattr(receive, "__self__", None)
    return keep_alive_at_start and getattr(cycle, "keep_alive", True) is False


class _EventStream(Response):
    """The SSE response: a subscriber's frames as they come, until the client or the server leaves."""

    def __init__(self, feed: LedgerFeed, sub: Subscriber, first: bytes) -> None:
        super().__init__(status_code=200)
        self.feed, self.sub, self.first = feed, sub, first

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
            finally:  # a disconnect, or a server that can no longer tell us: either way the client is gone
                gone.set()
                self.sub.wake.set()

        cycle = getattr(receive, "__self__", None)
        keep_alive_at_start = getattr(cycle, "keep_alive", False) is True
        watcher = asyncio.ensure_future(watch())
        loop = asyncio.get_running_loop()
        try:
            headers = [(k.encode(), v.encode()) for k, v in {
                **_NO_STORE, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
                "x-accel-buffering": "no"}.items()]  # x-accel-buffering: nginx must not buffer the stream
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": f"retry: {_RETRY_MS}\n\n".encode() + self.first,
                        "more_body": True})
            started = beat = loop.time()
            while not gone.is_set() and not self.sub.closed and loop.time() - started < STREAM_MAX_S:
                if _server_stopping(receive, keep_alive_at_start):
                    break
                try:
                    await asyncio.wait_for(self.sub.wake.wait(), _TICK_S)
                except asyncio.TimeoutError:
                    pass
                if gone.is_set():
                    break
                chunks = self.sub.take()
                if not chunks and loop.time() - beat >= HEARTBEAT_S:
                    chunks = [b": heartbeat\n\n"]
                if chunks:
                    beat = loop.time()
                    await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            self.feed.unsubscribe(self.sub)


class _Dashboard:
    """The routes of one runtime's dashboard, sharing its one ledger feed."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.feed = LedgerFeed(runtime.store, self.tiles, self.refresh_policy)
        self.assets = {name: _static(name) for name in _STATIC_TYPES}
        self.version = hashlib.sha256(b"".join(self.assets.values())).hexdigest()[:12]
        self.page_template = _static("dashboard.html").decode()

    async def tiles(self) -> dict[str, Any]:
        departments = await self.runtime.store.objects("department")
        return await tiles(self.runtime.store, self.runtime.policies.current, departments, self.runtime.clock())

    async def refresh_policy(self) -> None:
        await self.runtime.refresh_policy()

    def problem(self, request: Request) -> str | None:
        """None when the admin token is good (any role), else what is wrong with it."""
        try:
            role_of(self.runtime, request, allow_query=True)
        except ApiError as exc:
            return exc.message
        return None

    async def page(self, request: Request) -> Response:
        root = html.escape(request.scope.get("root_path", ""))
        problem = self.problem(request)
        if problem is not None:
            return Response(_UNAUTHORIZED_PAGE.format(root=root, problem=html.escape(problem.split(":")[0].capitalize())),
                            status_code=401, media_type="text/html", headers=_NO_STORE)
        body = (self.page_template.replace("{{root}}", root).replace("{{version}}", self.version)
                .replace("{{tenant}}", html.escape(self.runtime.config.tenant)))
        return Response(body, media_type="text/html", headers=_NO_STORE)

    async def snapshot(self, request: Request) -> Response:
        problem = self.problem(request)
        if problem is not None:
            return _error(401, problem, "unauthenticated")
        store = self.runtime.store
        try:
            departments = await store.objects("department")
            data = await snapshot(store, self.runtime.policies.current, departments, self.runtime.clock())
        except StoreUnavailable as exc:
            return _error(503, f"the store cannot be reached: {exc}", "POLICY_UNAVAILABLE")
        return _json(data)

    async def stream(self, request: Request) -> Response:
        problem = self.problem(request)
        if problem is not None:
            return _error(401, problem, "unauthenticated")
        try:
            sub = await self.feed.subscribe(_last_event_id(request), start=self.runtime.tasks.append)
        except StoreUnavailable as exc:
            return _error(503, f"the store cannot be reached: {exc}", "POLICY_UNAVAILABLE")
        # Subscribed before the tiles are read, so no row can fall between the two.
        try:
            first = frame("tiles", await self.tiles())
        except StoreUnavailable:
            first = frame("status", {"store": "unavailable"})
        except BaseException:
            self.feed.unsubscribe(sub)  # the response that would have unsubscribed it never runs
            raise
        return _EventStream(self.feed, sub, first)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == "favicon.svg":
            return Response(_FAVICON, media_type="image/svg+xml",
                            headers={**SECURITY_HEADERS, "cache-control": "max-age=86400"})
        if name not in self.assets:
            return _error(404, f"no dashboard asset {name}", "not_found")
        # The page asks for ?v=<hash of the assets>, so caching them for an hour never serves a stale script.
        return Response(self.assets[name], media_type=_STATIC_TYPES[name],
                        headers={**SECURITY_HEADERS, "cache-control": "public, max-age=3600"})


def dashboard_app(runtime: Any) -> Starlette:
    """The dashboard as a Starlette app, mounted by the gateway at every path starting with /dashboard.

    `app.state.feed` is this runtime's one ledger feed; its poller starts with
    the first stream and is added to `runtime.tasks`, so `runtime.close()` stops it.
    """
    d = _Dashboard(runtime)
    app = Starlette(routes=[
        Route("/dashboard", d.page, methods=["GET"]),
        Route("/dashboard/", d.page, methods=["GET"]),
        Route("/dashboard/api/snapshot", d.snapshot, methods=["GET"]),
        Route("/dashboard/stream", d.stream, methods=["GET"]),
        Route("/dashboard/static/{name}", d.static, methods=["GET"]),
    ])
    app.state.feed = d.feed
    return app
