"""One sealer per ledger among PostgreSQL replicas: the advisory lock elects exactly one, and hands over."""

from __future__ import annotations

import uuid

import psycopg

from p402.stores.pgseal import PostgresSealLock
from tests.stores.conftest import PG_URL


def _lock(schema: str) -> PostgresSealLock:
    return PostgresSealLock(PG_URL, {"autocommit": True, "options": f"-c search_path={schema}"})


def test_exactly_one_replica_seals_and_another_takes_over_when_it_goes() -> None:
    schemas = [f"p402_seal_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for s in schemas:
            conn.execute(f"CREATE SCHEMA {s}")
    a, b, other = _lock(schemas[0]), _lock(schemas[0]), _lock(schemas[1])
    try:
        assert a.try_acquire() and a.try_acquire()  # held, and stays held
        assert not b.try_acquire()  # a second replica of the same ledger waits
        assert other.try_acquire()  # another ledger (schema) has its own sealer
        a.release()  # the sealer goes away
        assert b.try_acquire()
        assert not a.try_acquire()
    finally:
        for lock in (a, b, other):
            lock.release()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for s in schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
