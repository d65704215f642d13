"""What only the PostgreSQL store has: a network between it and the gateway.

A loopback TCP relay stands between the store and PostgreSQL, so a test can
cut the line (the gateway must fail closed, then recover) or count who speaks
when (a reservation must cost two round trips, as documented).
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest

from p402.errors import StoreUnavailable
from p402.stores.postgres import PostgresStore
from tests.stores.conftest import PG_URL, Backend
from tests.stores.storekit import ESTIMATE, NOW, budget, chain_ok, iso, policy, reserve, settle_entry, who

POLICY = policy(budget("acme-month", "tenant:acme", "100"), budget("eng-month", "department:eng", "10"),
                budget("per-employee", "department:eng", "1", per="employee"))


class Relay:
    """Forwards loopback TCP to PostgreSQL; counts client turns; can cut every connection."""

    def __init__(self) -> None:
        self.port = 0
        self.turns = 0  # times the client spoke after the server did: round trips
        self._last = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every open connection, as a dead network or database would."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", 5432)
        except OSError:
            client_w.close()
            return
        self._writers += [client_w, server_w]
        await asyncio.gather(self._pipe(client_r, server_w, "client"), self._pipe(server_r, client_w, "server"),
                             return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, side: str) -> None:
        try:
            while data := await reader.read(65536):
                if side == "client" and self._last != "client":
                    self.turns += 1
                self._last = side
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@pytest.fixture
def pg(tmp_path: Path, run: Any) -> Iterator[Backend]:
    b = Backend("postgres", tmp_path, run)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def relay(run: Any) -> Iterator[Relay]:
    r = Relay()
    run(r.start())
    yield r
    if r._server is not None and r._server.is_serving():
        run(r.stop())


def _policy_row(name: str) -> dict[str, Any]:
    return {"event_id": f"evt_{name}", "ts": iso(NOW), "kind": "policy"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_gone(pg: Backend, pid: int) -> None:
    for _ in range(500):
        if not pg.raw("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)):
            return
        time.sleep(0.01)
    pytest.fail(f"backend {pid} did not exit")


def test_an_unreachable_or_misnamed_store_is_unavailable(run: Any) -> None:
    with pytest.raises(StoreUnavailable):
        run(PostgresStore.connect(f"postgresql://postgres@127.0.0.1:{_free_port()}/test"))
    with pytest.raises(StoreUnavailable):
        run(PostgresStore.connect("mysql://postgres@127.0.0.1/test"))


def test_it_fails_closed_while_the_database_is_gone_and_recovers(pg: Backend, relay: Relay, run: Any) -> None:
    store = run(PostgresStore.connect(relay.url, pg.schema, pool_size=2))
    pg.opened.append(store)
    assert run(reserve(store, POLICY, who("alice")))[0].allowed

    run(relay.stop())
    with pytest.raises(StoreUnavailable):
        run(reserve(store, POLICY, who("bob")))
    with pytest.raises(StoreUnavailable):
        run(store.ping())

    run(relay.start())  # same port: the database is back
    run(store.ping())
    assert run(reserve(store, POLICY, who("carol")))[0].allowed
    direct = pg.open()
    assert chain_ok(direct) == 2  # bob's refused request left no trace
    assert run(direct.reserved_by("employee")) == {"alice": ESTIMATE, "carol": ESTIMATE}


def test_a_transaction_cut_mid_flight_fails_closed_and_writes_nothing(pg: Backend, relay: Relay, run: Any) -> None:
    store = run(PostgresStore.connect(relay.url, pg.schema, pool_size=1))
    pg.opened.append(store)
    assert run(reserve(store, POLICY, who("alice")))[0].allowed
    [(pid,)] = run(store.pool.fetch("SELECT pg_backend_pid()"))

    with psycopg.connect(PG_URL, options=f"-c search_path={pg.schema}") as holder:
        holder.execute("SELECT 1 FROM ledger_head FOR UPDATE")  # park the next append on this lock

        async def cut_while_waiting() -> None:
            task = asyncio.create_task(reserve(store, POLICY, who("bob")))
            for _ in range(500):
                await asyncio.sleep(0.01)
                if pg.raw("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)) == [("Lock",)]:
                    break
            else:
                pytest.fail("the reservation never reached the ledger head lock")
            await relay.stop()
            with pytest.raises(StoreUnavailable):
                await task

        run(cut_while_waiting())
        # The server notices its client is gone while still waiting for the lock, and
        # aborts the transaction, although its COMMIT had been sent along.
        _wait_until_gone(pg, pid)
        holder.rollback()

    direct = pg.open()
    assert chain_ok(direct) == 1
    assert run(direct.live_holds()) == 1
    assert run(direct.reserved_by("employee")) == {"alice": ESTIMATE}


def test_a_connection_the_server_dropped_is_replaced_without_failing_a_request(pg: Backend, run: Any) -> None:
    store = pg.open(pool_size=1)
    assert run(reserve(store, POLICY, who("alice")))[0].allowed
    [(pid,)] = run(store.pool.fetch("SELECT pg_backend_pid()"))

    pg.raw("SELECT pg_terminate_backend(%s)", (pid,))
    _wait_until_gone(pg, pid)  # so its goodbye has reached our socket

    assert run(reserve(store, POLICY, who("bob")))[0].allowed
    assert run(store.pool.fetch("SELECT pg_backend_pid()"))[0][0] != pid
    assert chain_ok(store) == 2


def test_a_store_that_cannot_get_its_locks_in_time_fails_closed(pg: Backend, run: Any) -> None:
    store = pg.open(pool_size=1)
    [(pid,)] = run(store.pool.fetch("SELECT pg_backend_pid()"))
    store.pool.txn_timeout_s = 0.3
    with psycopg.connect(PG_URL, options=f"-c search_path={pg.schema}") as holder:
        holder.execute("SELECT 1 FROM ledger_head FOR UPDATE")
        with pytest.raises(StoreUnavailable):
            run(store.record(_policy_row("stuck")))
        _wait_until_gone(pg, pid)  # the timed-out connection is closed, its transaction never commits
        holder.rollback()
    store.pool.txn_timeout_s = 15.0
    assert run(store.record(_policy_row("after"))) == 1
    assert chain_ok(store) == 1


def test_replicas_starting_together_share_one_schema_and_one_chain(pg: Backend, run: Any) -> None:
    async def start_four() -> list[PostgresStore]:
        return list(await asyncio.gather(*(PostgresStore.connect(PG_URL, pg.schema, pool_size=1) for _ in range(4))))

    replicas = run(start_four())
    pg.opened.extend(replicas)
    for n, replica in enumerate(replicas):
        assert run(replica.record(_policy_row(f"r{n}"))) == n + 1
    assert chain_ok(replicas[0]) == 4


def test_round_trips_are_two_per_reservation_and_settlement_one_per_record(pg: Backend, relay: Relay,
                                                                              run: Any) -> None:
    store = run(PostgresStore.connect(relay.url, pg.schema, pool_size=1))
    pg.opened.append(store)
    for n in range(7):  # past psycopg's automatic statement preparation (after 5 uses)
        relay.turns = 0
        decision, hold, body = run(reserve(store, POLICY, who("alice")))
        assert decision.allowed and relay.turns == 2, n
        relay.turns = 0
        assert run(store.settle(hold, ESTIMATE, settle_entry(body, ESTIMATE)))
        assert relay.turns == 2, n
        relay.turns = 0
        run(store.record(_policy_row(f"r{n}")))
        assert relay.turns == 1, n
    assert body["seq"] == 19 and chain_ok(pg.open()) == 21  # the store tells each entry its seq


def test_the_url_may_carry_libpq_parameters_and_its_own_options(pg: Backend, run: Any) -> None:
    url = f"{PG_URL}?sslmode=disable&options=-c%20search_path%3D{pg.schema}"
    pg.raw(f"CREATE SCHEMA {pg.schema}")
    store = run(PostgresStore.connect(url))  # no schema argument: the URL's search_path places the tables
    pg.opened.append(store)
    assert run(store.record(_policy_row("via-url"))) == 1
    assert pg.raw("SELECT count(*) FROM ledger") == [(1,)]
    with pytest.raises(StoreUnavailable):
        run(PostgresStore.connect(f"{PG_URL}?no_such_parameter=1"))


def test_it_offers_every_method_of_the_sqlite_store_with_the_same_signature() -> None:
    from p402.stores.sqlite import SqliteStore

    public = [n for n in vars(SqliteStore) if not n.startswith("_") and n != "from_url"]
    assert len(public) >= 20
    for name in public:
        ours, theirs = getattr(PostgresStore, name), getattr(SqliteStore, name)
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(theirs), name
        shape = [(p.name, p.kind, p.default) for p in inspect.signature(theirs).parameters.values()]
        assert [(p.name, p.kind, p.default) for p in inspect.signature(ours).parameters.values()] == shape, name


def test_a_statement_the_database_refuses_does_not_poison_the_pool(pg: Backend, run: Any) -> None:
    """An error inside a pipelined transaction leaves psycopg's prepared-statement cache out of step
    with the server; such a connection is closed, not reused, so the next requests still work."""
    from p402.errors import StoreError

    store = pg.open(pool_size=2)
    nobody = policy(budget("sales-month", "department:sales", "100"))  # nothing binds alice: no cap to stop it
    for _ in range(12):  # past psycopg's prepare threshold, on both pooled connections
        decision, hold, _ = run(reserve(store, POLICY, who("bob")))
        assert decision.allowed and hold
        with pytest.raises(StoreError):
            run(reserve(store, nobody, who("alice"), max_tokens=2**62))  # a hold beyond bigint
    for _ in range(6):
        decision, hold, _ = run(reserve(store, POLICY, who("bob")))
        assert decision.allowed and hold
