"""Electing the one ledger sealer among replicas that share a PostgreSQL store.

Checkpoints chain to each other, so exactly one process may seal a ledger. On
SQLite that is a file lock beside the database; replicas on different machines
need the database itself: a session-level advisory lock, held by the sealer's
own connection for as long as the process lives. If the sealer dies, its
connection closes, the lock is released, and the next replica to ask takes over.
"""

from __future__ import annotations

from typing import Any

import psycopg

__all__ = ["PostgresSealLock"]

# One lock per schema: tests (and tenants) that share a database in separate schemas
# each elect their own sealer.
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext('p402-ledger-sealer:' || current_schema()))"


class PostgresSealLock:
    """Implements `p402.prove.checkpoints.SealLock` with `pg_try_advisory_lock`."""

    def __init__(self, url: str, params: dict[str, Any]) -> None:
        self.url, self.params = url, params
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False

    def try_acquire(self) -> bool:
        """True while this process holds the lock. Never blocks on another holder; does network
        I/O, so the sealer calls it from a worker thread."""
        if self._held and self._conn is not None and not self._conn.closed and not self._conn.broken:
            try:
                self._conn.execute("SELECT 1")  # a server restart ends the session (and the lock) silently
                return True
            except psycopg.Error:
                pass  # let go, and compete again
        self.release()
        try:
            self._conn = psycopg.connect(self.url, **self.params)
            row = self._conn.execute(_TRY_LOCK).fetchone()
        except psycopg.Error:
            # The store is unreachable: nobody seals now; requests fail closed elsewhere.
            self.release()
            return False
        self._held = bool(row and row[0])
        if not self._held:
            self.release()  # do not keep an idle connection open per waiting replica
        return self._held

    def release(self) -> None:
        if self._conn is not None:
            try:
                if self._held and not self._conn.closed and not self._conn.broken:
                    # Unlock before closing: the server lets a closed session's locks go only
                    # when its backend has exited, so the next replica could still be refused.
                    self._conn.execute("SELECT pg_advisory_unlock_all()")
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn, self._held = None, False
