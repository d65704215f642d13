"""A small bounded pool of async PostgreSQL connections, and the transaction boundary.

Everything psycopg raises is translated here, at the edge, into p402's tree::

    psycopg.errors.UniqueViolation       -> Conflict (only where the caller names the conflict)
    psycopg.errors.TransactionRollback   -> Contention (deadlock / serialization failure: retried)
    OperationalError, InterfaceError,
    a connect failure, a timeout         -> StoreUnavailable (the gateway fails closed)
    any other psycopg.Error              -> StoreError

A transaction runs in psycopg's pipeline mode with an explicit BEGIN: statements
are queued and sent without waiting, and only fetching a result (or the final
COMMIT) waits for the server. That is what keeps a reservation at two round trips.
"""

from __future__ import annotations

import asyncio
import select
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import psycopg
from psycopg import pq

from p402.errors import Conflict, P402Error, StoreError, StoreUnavailable

__all__ = ["PgPool", "Contention", "translate", "retrying", "DEFAULT_POOL_SIZE", "ACQUIRE_TIMEOUT_S",
           "TXN_TIMEOUT_S", "CONTENTION_RETRIES"]

DEFAULT_POOL_SIZE = 8  # connections per process; each replica has its own pool
ACQUIRE_TIMEOUT_S = 10.0  # longest wait for a free connection before failing closed
TXN_TIMEOUT_S = 15.0  # longest a transaction (or read) may take, lock waits included
CONTENTION_RETRIES = 3  # attempts for a transaction PostgreSQL rolled back (deadlock, serialization)

T = TypeVar("T")
Connection = psycopg.AsyncConnection[tuple[Any, ...]]
_IDLE = pq.TransactionStatus.IDLE
_OPEN = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)


class Contention(StoreUnavailable):
    """PostgreSQL rolled the transaction back to break a deadlock or a serialization
    conflict; nothing was written, so the whole transaction may simply run again."""


def translate(exc: BaseException, conflict: str | None = None) -> P402Error:
    """Map a psycopg (or socket) error to p402's exception tree."""
    if conflict is not None and isinstance(exc, psycopg.errors.UniqueViolation):
        return Conflict(conflict)
    if isinstance(exc, psycopg.errors.TransactionRollback):
        return Contention(f"store contention, transaction rolled back: {exc}")
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, OSError)):
        return StoreUnavailable(f"store unavailable: {exc}")
    return StoreError(f"store error: {exc}")


async def retrying(attempt: Callable[[], Awaitable[T]], tries: int = CONTENTION_RETRIES) -> T:
    """Run `attempt` again when PostgreSQL rolled it back for contention.

    Counters are locked in one global order, so deadlocks should not happen;
    this is the safety net for the policy-object paths, whose row order is the
    caller's. A rolled-back transaction wrote nothing, so a retry is safe.
    """
    for n in range(tries):
        try:
            return await attempt()
        except Contention:
            if n == tries - 1:
                raise
    raise AssertionError("unreachable")  # the loop either returns or raises


class PgPool:
    """At most `size` autocommit connections, opened lazily and reused LIFO.

    Not thread-safe: one pool belongs to one event loop, like the store that owns it.
    """

    def __init__(self, conninfo: str, params: dict[str, Any], size: int = DEFAULT_POOL_SIZE,
                 acquire_timeout_s: float = ACQUIRE_TIMEOUT_S, txn_timeout_s: float = TXN_TIMEOUT_S,
                 setup: Callable[[Connection], Awaitable[None]] | None = None) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one connection")
        self.conninfo = conninfo
        self.params = params
        self.size = size
        self.acquire_timeout_s = acquire_timeout_s
        self.txn_timeout_s = txn_timeout_s
        self.setup = setup  # runs once on every new connection
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    async def acquire(self) -> Connection:
        """A connection of our own until `release`; StoreUnavailable when none comes in time."""
        try:
            await asyncio.wait_for(self._slots.acquire(), self.acquire_timeout_s)
        except TimeoutError as exc:
            raise StoreUnavailable(f"all {self.size} store connections stayed busy for "
                                   f"{self.acquire_timeout_s}s") from exc
        try:
            if self._closed:
                raise StoreUnavailable("the store is closed")
            while self._idle:
                conn = self._idle.pop()
                if not _looks_dead(conn):
                    return conn
                await conn.close()
            conn = await psycopg.AsyncConnection.connect(self.conninfo, **self.params)
            if self.setup is not None:
                try:
                    await self.setup(conn)
                except BaseException:
                    await conn.close()
                    raise
            return conn
        except BaseException as exc:
            self._slots.release()
            if isinstance(exc, (psycopg.Error, OSError)):
                raise translate(exc) from exc
            raise

    async def release(self, conn: Connection) -> None:
        """Give a connection back; one that is broken or mid-transaction is closed instead."""
        try:
            if not self._closed and not conn.closed and conn.info.transaction_status == _IDLE:
                self._idle.append(conn)
            else:
                await conn.close()
        finally:
            self._slots.release()

    @asynccontextmanager
    async def transaction(self, conflict: str | None = None) -> AsyncIterator[Connection]:
        """BEGIN ... COMMIT in pipeline mode; rolled back on any error, which is re-raised.

        Errors raised by the caller's own code (NotFound, a failing decide) pass
        through unchanged after the rollback; psycopg errors are translated.
        """
        conn = await self.acquire()
        try:
            async with asyncio.timeout(self.txn_timeout_s):
                try:
                    async with conn.pipeline():
                        await conn.execute("BEGIN")
                        yield conn
                        await conn.execute("COMMIT")
                except BaseException as exc:
                    await _abort(conn, exc)
                    raise
        except (psycopg.Error, OSError) as exc:
            raise translate(exc, conflict) from exc
        except TimeoutError as exc:
            raise StoreUnavailable(f"the store did not answer within {self.txn_timeout_s}s") from exc
        finally:
            await self.release(conn)

    async def fetch(self, query: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        """One read-only statement on its own (autocommit); returns all rows."""
        conn = await self.acquire()
        try:
            async with asyncio.timeout(self.txn_timeout_s):
                cur = await conn.execute(query, params)
                return await cur.fetchall()
        except (psycopg.Error, OSError) as exc:
            raise translate(exc) from exc
        except TimeoutError as exc:
            await conn.close()
            raise StoreUnavailable(f"the store did not answer within {self.txn_timeout_s}s") from exc
        finally:
            await self.release(conn)

    async def close(self) -> None:
        """Close idle connections now, busy ones as they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


def _looks_dead(conn: Connection) -> bool:
    """An idle connection has nothing to read; if it has, the server most likely
    closed it (restart, failover, pg_terminate_backend) and said why.

    Checking costs one non-blocking poll instead of a round trip, and spares the
    first request after a database restart a needless StoreUnavailable. A healthy
    connection that merely received a notice is discarded too, which is harmless.
    """
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


async def _abort(conn: Connection, exc: BaseException) -> None:
    """Leave the connection idle (rolled back) or closed; never raise over `exc`."""
    if conn.closed:
        return
    if (isinstance(exc, (asyncio.CancelledError, psycopg.Error))
            or conn.info.transaction_status not in (*_OPEN, _IDLE)):
        # Cancelled mid-exchange (a timeout): the protocol state is unknown. Or the
        # server refused a statement of the pipeline: psycopg's cache of prepared
        # statements may now name ones the server never made ("prepared statement
        # _pg3_1 does not exist" on every later use). Either way the connection
        # cannot be trusted for another transaction; a new one costs one connect.
        await conn.close()
        return
    if conn.info.transaction_status in _OPEN:
        try:
            await conn.execute("ROLLBACK")
        except psycopg.Error:
            await conn.close()
