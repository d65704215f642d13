"""A real gateway for the dashboard tests: uvicorn on 127.0.0.1 (ephemeral port) in a background thread.

The gateway runs the simulated provider with no latency on a fresh store; tests
talk to it over HTTP like any client, and reach its runtime (on the server's own
event loop) through `call()` when they need to look behind the API.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any, Awaitable, TypeVar

import uvicorn

from p402.config import Config, parse_config
from p402.web.app import GatewayApp

T = TypeVar("T")

ADMIN_TOKEN = "dash-admin-token-0123456789abcdef"
VIEWER_TOKEN = "dash-viewer-token-0123456789abcdef"
# A model name is the one free-text identifier an operator's config hands to the ledger unchecked.
XSS_MODEL = '<img src=x onerror="window.__xss=(window.__xss||0)+1">'
START_TIMEOUT_S = 20.0


def dashboard_config(tmp_path: Path, store: str | None = None) -> Config:
    """A small organisation: eng (big monthly cap), sales (a tiny one), a tenant cap, one unpriced model."""
    raw: dict[str, Any] = {
        "store": store or f"sqlite:///{tmp_path / 'p402.db'}",
        "ledger": {"signing_key": str(tmp_path / "ledger-key.pem")},  # never beside the working directory
        "tenant": "acme",
        "admin_tokens": [{"token": ADMIN_TOKEN, "role": "admin"}, {"token": VIEWER_TOKEN, "role": "viewer"}],
        "providers": {"simulated": {"latency_ms": 0, "completion_tokens": 32}},
        "models": [
            {"name": "gpt-4o-mini", "provider": "simulated", "categories": ["chat", "standard"],
             "price": {"input_per_mtok": "0.15", "output_per_mtok": "0.60"}},
            {"name": "gpt-4o", "provider": "simulated", "categories": ["chat", "premium"],
             "price": {"input_per_mtok": "2.50", "output_per_mtok": "10.00"}},
            {"name": XSS_MODEL, "provider": "simulated", "categories": ["chat"]},  # no price: PRICE_UNKNOWN
        ],
        "departments": [{"id": "eng"}, {"id": "sales"}, {"id": "research"}],
        "employees": [{"id": "alice", "department": "eng"}, {"id": "carol", "department": "sales"}],
        "keys": [{"id": "k-alice", "employee": "alice", "secret": "sk-test-alice-0123456789"},
                 {"id": "k-carol", "employee": "carol", "secret": "sk-test-carol-0123456789"}],
        "budgets": [
            {"id": "acme-month", "scope": "tenant:acme", "cap_usd": "50000", "period": "month"},
            {"id": "eng-month", "scope": "department:eng", "cap_usd": "5000", "period": "month"},
            {"id": "sales-month", "scope": "department:sales", "cap_usd": "0.001", "period": "month"},
        ],
        "policies": [{"scope": "department:sales", "deny_categories": ["premium"]}],
    }
    return parse_config(raw, str(tmp_path / "p402.yaml"))


SECRETS = {"alice": "sk-test-alice-0123456789", "carol": "sk-test-carol-0123456789"}


class Answer:
    """An HTTP answer: status, headers (lower-case names) and body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


class DashboardGateway:
    """Start with `start()`, stop with `stop()`; `base` is the gateway's URL."""

    def __init__(self, config: Config) -> None:
        self.app = GatewayApp(config)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                                    access_log=False, lifespan="on", loop="asyncio"))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._serve, name="dashboard-gateway", daemon=True)
        self.base = ""

    def _serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        finally:
            self.loop.close()

    def start(self) -> "DashboardGateway":
        self.thread.start()
        ready = threading.Event()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            ready.wait(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)

    @property
    def runtime(self) -> Any:
        return self.app.runtime

    def call(self, coro: Awaitable[T]) -> T:
        """Run a coroutine on the server's loop (where the runtime's store lives) and wait for it."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)  # type: ignore[arg-type]

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            return Answer(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def chat(self, who: str, model: str = "gpt-4o-mini", max_tokens: int | None = None,
             headers: dict[str, str] | None = None) -> Answer:
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "How much did we spend?"}]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        return self.request("POST", "/v1/chat/completions", body,
                            {"Authorization": f"Bearer {SECRETS[who]}", **(headers or {})})

    def admin(self, method: str, path: str, body: Any = None) -> Answer:
        return self.request(method, path, body, {"Authorization": f"Bearer {ADMIN_TOKEN}"})

    def ledger_seqs(self, after: int) -> list[int]:
        """The seqs of every ledger row after `after`, oldest first, from the admin API."""
        rows = self.admin("GET", "/admin/v1/ledger/events?limit=1000").json()["data"]
        return sorted(r["seq"] for r in rows if r["seq"] > after)


def usd_text(amount: Decimal | str) -> str:
    """A USD amount as the dashboard prints it: `$1,234.5678`, at least two decimals, nothing rounded."""
    text = format(Decimal(amount).normalize(), "f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"${int(whole):,}.{frac}"
