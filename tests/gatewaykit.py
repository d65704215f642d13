"""Test support: a standard test organisation and a real gateway on loopback.

The gateway runs the real ASGI app under uvicorn in a background thread (its
own event loop), exactly as `p402 serve` does; tests talk to it over HTTP with
the official SDKs, and read the store through their own SQLite connection, as
another replica or the CLI would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import uvicorn

from p402.config import Config, parse_config
from p402.web.app import GatewayApp

ADMIN_TOKEN = "test-admin-token-0123456789"
FINANCE_TOKEN = "test-finance-token-0123456789"
VIEWER_TOKEN = "test-viewer-token-0123456789"
SECRETS = {"alice": "sk-test-alice-0123456789abcdef", "bob": "sk-test-bob-0123456789abcdef",
           "carol": "sk-test-carol-0123456789abcdef", "bot": "sk-test-bot-0123456789abcdef",
           "eng": "sk-test-eng-0123456789abcdef"}


def org(tmp: Path, budgets: list[dict[str, Any]] | None = None, policies: list[dict[str, Any]] | None = None,
        **extra: Any) -> dict[str, Any]:
    """The raw config of the test organisation (tweak and pass to `parse_config`)."""
    raw: dict[str, Any] = {
        "store": f"sqlite:///{tmp / 'p402.db'}",
        "tenant": "acme",
        "admin_tokens": [{"token": ADMIN_TOKEN, "role": "admin"}, {"token": FINANCE_TOKEN, "role": "finance"},
                         {"token": VIEWER_TOKEN, "role": "viewer"}],
        "providers": {"simulated": {"latency_ms": 0, "completion_tokens": 32}},
        "models": [
            {"name": "gpt-4o-mini", "provider": "simulated", "categories": ["chat", "standard"],
             "price": {"input_per_mtok": "0.15", "output_per_mtok": "0.60"}},
            {"name": "gpt-4o", "provider": "simulated", "categories": ["chat", "premium"],
             "price": {"input_per_mtok": "2.50", "output_per_mtok": "10.00"}},
            {"name": "claude-sonnet-4-6", "provider": "simulated", "categories": ["chat", "premium"],
             "price": {"input_per_mtok": "3", "output_per_mtok": "15"}},
            {"name": "text-embedding-3-small", "provider": "simulated", "categories": ["embedding"],
             "price": {"input_per_mtok": "0.02", "output_per_mtok": "0"}},
            {"name": "local-llm", "provider": "simulated", "upstream": "no-such-model-in-any-catalog",
             "categories": ["chat"]},
        ],
        "departments": [{"id": "eng", "owner": "0x00000000000000000000000000000000000000e9"},
                        {"id": "sales"}, {"id": "support"}],
        "employees": [{"id": "alice", "department": "eng"}, {"id": "bob", "department": "eng"},
                      {"id": "carol", "department": "sales"}],
        "keys": [{"id": "k-alice", "employee": "alice", "secret": SECRETS["alice"]},
                 {"id": "k-bob", "employee": "bob", "secret": SECRETS["bob"]},
                 {"id": "k-carol", "employee": "carol", "secret": SECRETS["carol"]},
                 {"id": "k-bot", "workflow": "support-bot", "department": "support", "secret": SECRETS["bot"]},
                 {"id": "k-eng", "department": "eng", "secret": SECRETS["eng"]}],
        "budgets": budgets if budgets is not None else [
            {"id": "acme-month", "scope": "tenant:acme", "cap_usd": "1000", "period": "month"}],
        "policies": policies or [],
    }
    raw.update(extra)
    return raw


PG_URL = os.environ.get("P402_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def pg_database(prefix: str = "p402_test") -> Iterator[str]:
    """A PostgreSQL database of its own for one test (the server at PG_URL), dropped afterwards; yields its URL."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def config_of(raw: dict[str, Any]) -> Config:
    return parse_config(raw, "test.yaml")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    base: str  # http://127.0.0.1:PORT
    app: GatewayApp
    config: Config
    clients: list[Any] = field(default_factory=list)

    def openai(self, who: str = "alice") -> Any:
        """An official OpenAI SDK client for one of the test keys (closed when the gateway stops)."""
        import openai
        c = openai.OpenAI(base_url=f"{self.base}/v1", api_key=SECRETS.get(who, who), max_retries=0)
        self.clients.append(c)
        return c

    def anthropic(self, who: str = "alice") -> Any:
        """An official Anthropic SDK client for one of the test keys."""
        import anthropic
        c = anthropic.Anthropic(base_url=self.base, api_key=SECRETS.get(who, who), max_retries=0)
        self.clients.append(c)
        return c

    @property
    def runtime(self) -> Any:
        return self.app.runtime

    @property
    def db_path(self) -> str:
        return self.config.store.removeprefix("sqlite:///")


@contextlib.contextmanager
def gateway(config: Config) -> Iterator[Running]:
    """Run the real gateway on an ephemeral loopback port for the duration of the block."""
    port = free_port()
    app = GatewayApp(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                           loop="uvloop", http="httptools", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.01)
    if not server.started:
        raise RuntimeError("the test gateway did not start")
    running = Running(f"http://127.0.0.1:{port}", app, config)
    try:
        yield running
    finally:
        for c in running.clients:
            c.close()
        server.should_exit = True
        thread.join(timeout=10)


def run(coro: Any) -> Any:
    """Drive a coroutine from a sync test."""
    return asyncio.run(coro)


def stream_then_leave(gw: Running, body: dict[str, Any], who: str = "alice", events: int = 5) -> None:
    """Start a streaming chat request on a raw socket, read `events` SSE events (0: none), then hang up,
    as a client that crashes or times out does (the SDKs cannot be cut off mid-read on purpose)."""
    import socket

    import orjson
    host, port = gw.base.removeprefix("http://").split(":")
    payload = orjson.dumps(body)
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: p402\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + SECRETS.get(who, who).encode() + b"\r\nContent-Length: "
                  + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        s.settimeout(10)  # a gateway that answers otherwise (or hangs) fails the test, never the whole suite
        received = b""
        while received.count(b"data: ") < events:
            chunk = s.recv(4096)
            if not chunk:
                raise AssertionError(f"the gateway closed the stream after {received[:300]!r}")
            received += chunk
        if not events:
            threading.Event().wait(0.05)  # admitted, the provider not yet answered: leave now


def wait_until(predicate: Any, timeout_s: float = 5.0) -> None:
    """Poll until `predicate()` is true (background work such as settlements), at most `timeout_s`."""
    import time
    deadline = time.time() + timeout_s
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {getattr(predicate, '__name__', 'it')}")
        time.sleep(0.05)


def counter_rows(db: Path | str) -> list[tuple[str, str, int, int, int]]:
    """The SQLite counters table as (budget_id, member, window, settled, reserved), brought up to date
    first: it lags the ledger by up to a flush interval, and any store on the file can write it out
    (this one, opened beside the gateway, is one more replica)."""
    from p402.stores.sqlite import SqliteStore

    async def read() -> list[tuple[str, str, int, int, int]]:
        store = SqliteStore(str(db))
        try:
            await store.write_out()
            return store.db.execute("SELECT budget_id, member, window, settled, reserved FROM counters").fetchall()
        finally:
            await store.close()
    return list(asyncio.run(read()))
