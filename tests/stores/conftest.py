"""Fixtures for the store suites: every test runs against every store.

`store` is parametrised over SQLite (a fresh file in tmp_path) and PostgreSQL
(127.0.0.1:5432, database `test`, user `postgres`, in a fresh schema dropped
afterwards; override with P402_TEST_POSTGRES). PostgreSQL being unreachable
fails the postgres tests: CI starts it, and a skipped store is an untested one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import psycopg
import pytest
from psycopg import sql

from p402.stores.postgres import PostgresStore
from p402.stores.sqlite import SqliteStore
from tests.gatewaykit import PG_URL

T = TypeVar("T")
STORES = ["sqlite", "postgres"]


@pytest.fixture
def run() -> Iterator[Callable[[Awaitable[T]], T]]:
    """Run a coroutine on this test's own event loop (psycopg connections are bound to one loop)."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete  # type: ignore[misc]
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


class Backend:
    """One store's data: open more store instances on it (replicas) and reach its tables directly."""

    def __init__(self, kind: str, tmp_path: Path, run: Callable[[Awaitable[Any]], Any]) -> None:
        self.kind = kind
        self.run = run
        self.path = str(tmp_path / "p402.db")
        self.schema = f"p402_test_{uuid.uuid4().hex[:12]}"
        self.opened: list[Any] = []

    def open(self, pool_size: int = 4) -> Any:
        """Another store instance on the same data: for PostgreSQL, a replica with its own pool."""
        if self.kind == "sqlite":
            store: Any = SqliteStore(self.path)
        else:
            store = self.run(PostgresStore.connect(PG_URL, self.schema, pool_size=pool_size))
        self.opened.append(store)
        return store

    def raw(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run SQL on the store's tables behind its back (tampering); `%s` placeholders."""
        if self.kind == "sqlite":
            db = sqlite3.connect(self.path, isolation_level=None)
            try:
                return db.execute(query.replace("%s", "?"), params).fetchall()
            finally:
                db.close()
        with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={self.schema}") as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        self.run(_cancel_leftovers())
        for store in self.opened:
            self.run(store.close())
        if self.kind == "postgres":
            # A lock_timeout turns a transaction somebody left open into a teardown error, not a hang.
            with psycopg.connect(PG_URL, autocommit=True, options="-c lock_timeout=10s") as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))


async def _cancel_leftovers() -> None:
    """Cancel tasks a failed test left running (their transactions roll back as their connections close)."""
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() if t is not current]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


@pytest.fixture(params=STORES)
def backend(request: pytest.FixtureRequest, tmp_path: Path, run: Callable[[Awaitable[Any]], Any]) -> Iterator[Backend]:
    b = Backend(request.param, tmp_path, run)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def store(backend: Backend) -> Any:
    """A fresh, empty store of each kind."""
    return backend.open()
