"""SQLite balances are a fold of the ledger: what a crash, a restart or an older store file leaves behind.

A reservation and a settlement write ledger rows with their effects, not counter
rows; the counters table is written out in batches (p402.stores.sqlite). These
tests open the file the way a restarted gateway or an upgraded one would.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from p402.errors import StoreUnavailable
from p402.stores.sqlite import SqliteStore
from tests.stores.storekit import ESTIMATE, budget, chain_ok, plan_for, policy, reserve, settle_entry, who

POLICY = policy(budget("acme-month", "tenant:acme", "100"), budget("eng-month", "department:eng", "0.005"))
KEYS = list(plan_for(POLICY, who("alice")).keys)


def table(path: Path) -> dict[str, tuple[int, int]]:
    with sqlite3.connect(path) as db:
        return {b: (s, r) for b, s, r in db.execute("SELECT budget_id, settled, reserved FROM counters")}


def test_a_crash_before_the_counters_are_written_out_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "p402.db"

    async def before_the_crash() -> str:
        store = SqliteStore(str(path))
        _, hold, body = await reserve(store, POLICY, who("alice"))
        assert hold is not None
        assert await store.settle(hold, ESTIMATE // 2, settle_entry(body, ESTIMATE // 2))
        _, bob_hold, _ = await reserve(store, POLICY, who("bob"))
        assert bob_hold is not None
        store._checkpointer.close()  # type: ignore[union-attr]
        store.db.close()  # the process dies: nothing is flushed on the way out
        return bob_hold

    bob_hold = asyncio.run(before_the_crash())
    assert table(path) == {}  # the counters table never saw these requests

    async def after_the_restart() -> None:
        store = SqliteStore(str(path))
        try:
            # The ledger has every effect: $0.001 settled and bob's $0.002 still reserved.
            assert await store.balances(KEYS) == {k: (ESTIMATE // 2, ESTIMATE) for k in KEYS}
            assert (await reserve(store, POLICY, who("carol")))[0].allowed  # $0.001 + 2 x $0.002 of $0.005
            assert not (await reserve(store, POLICY, who("dave")))[0].allowed
            assert await store.live_holds() == 2 and bob_hold
            await store.write_out()
            assert table(path) == {k.budget_id: (ESTIMATE // 2, 2 * ESTIMATE) for k in KEYS}
            assert chain_ok(store) == 5
        finally:
            await store.close()

    asyncio.run(after_the_restart())


def test_a_store_file_from_before_the_fold_keeps_its_balances(tmp_path: Path) -> None:
    path = tmp_path / "p402.db"

    async def write() -> None:
        store = SqliteStore(str(path))
        _, hold, body = await reserve(store, POLICY, who("alice"))
        assert hold is not None and await store.settle(hold, ESTIMATE, settle_entry(body, ESTIMATE))
        await reserve(store, POLICY, who("bob"))
        await store.close()  # writes the counters out

    asyncio.run(write())
    with sqlite3.connect(path) as db:  # what an older p402 left: no effects column, counters written inline
        db.execute("DROP TRIGGER ledger_rows_need_effects")
        db.execute("ALTER TABLE ledger DROP COLUMN effects")
        db.execute("DELETE FROM meta WHERE k='folded_seq'")

    async def upgraded() -> None:
        store = SqliteStore(str(path))
        try:
            assert await store.balances(KEYS) == {k: (ESTIMATE, ESTIMATE) for k in KEYS}
            decision, hold, _ = await reserve(store, POLICY, who("carol"))
            assert hold is None and decision.deny_code == "BUDGET_EXCEEDED"  # $0.004 of $0.005 is taken
            assert chain_ok(store) == 4
        finally:
            await store.close()
        with sqlite3.connect(path) as db:  # and the upgraded file now refuses rows without effects
            assert db.execute("SELECT 1 FROM sqlite_master WHERE name='ledger_rows_need_effects'").fetchone()
        assert table(path) == {k.budget_id: (ESTIMATE, ESTIMATE) for k in KEYS}

    asyncio.run(upgraded())


def test_effects_changed_outside_p402_fail_closed_with_the_row_named(tmp_path: Path) -> None:
    path = tmp_path / "p402.db"

    async def scenario() -> None:
        store = SqliteStore(str(path))
        healthy = SqliteStore(str(path))  # a replica that has already folded row 1
        try:
            await reserve(store, POLICY, who("alice"))
            assert (await reserve(healthy, POLICY, who("bob")))[0].allowed
            with sqlite3.connect(path) as db:  # not written out yet: the next store must read row 1
                db.execute("UPDATE ledger SET effects = '[[\"eng-month\", 1]]' WHERE seq = 1")
            fresh = SqliteStore(str(path))
            try:
                with pytest.raises(StoreUnavailable, match="ledger row 1: its effects cannot be read"):
                    await reserve(fresh, POLICY, who("carol"))
                assert not fresh.db.in_transaction  # the file's write lock was let go
            finally:
                fresh._checkpointer.close()  # type: ignore[union-attr]
                fresh.db.close()
            # So the replica that folded row 1 before the edit keeps serving.
            assert (await reserve(healthy, POLICY, who("dave")))[0].deny_code == "BUDGET_EXCEEDED"
        finally:
            await healthy.close()
            await store.close()

    asyncio.run(scenario())


def test_an_earlier_p402_cannot_write_to_a_file_kept_as_a_fold(tmp_path: Path) -> None:
    # Its rows would carry no effects, and it would read balances from tables that lag the ledger.
    path = tmp_path / "p402.db"

    async def create() -> None:
        await SqliteStore(str(path)).close()

    asyncio.run(create())
    with sqlite3.connect(path) as db:
        columns = "seq, event_id, ts, kind, body, prev_hash, hash"
        with pytest.raises(sqlite3.IntegrityError, match="must be of that version or later"):
            db.execute(f"INSERT INTO ledger ({columns}) VALUES (1, 'evt_x', '2026-12-01T00:00:00Z', 'decision', "
                       f"'{{}}', 'x', 'y')")
        with pytest.raises(sqlite3.IntegrityError, match="must be of that version or later"):
            db.execute(f"INSERT INTO ledger ({columns}) VALUES (1, 'evt_y', '2026-12-01T00:00:00Z', 'policy', "
                       f"'{{}}', 'x', 'y')")  # nor any other row: it would not know where the ledger is


def test_a_replica_that_never_writes_out_keeps_no_deltas(tmp_path: Path) -> None:
    path = tmp_path / "p402.db"

    async def scenario() -> None:
        busy, writer = SqliteStore(str(path)), SqliteStore(str(path))
        try:
            for name in ("alice", "bob"):
                _, hold, body = await reserve(busy, POLICY, who(name))
                assert hold is not None and await busy.settle(hold, 1000, settle_entry(body, 1000))
            await writer.write_out()  # the other replica writes everything out first
            assert await busy.write_out() == 0
            assert not busy.fold.counter_deltas and not busy.fold.spend_deltas and not busy.fold.rows
        finally:
            await busy.close()
            await writer.close()

    asyncio.run(scenario())


def test_other_damage_to_the_file_fails_closed_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "p402.db"

    async def write() -> None:
        store = SqliteStore(str(path))
        await reserve(store, POLICY, who("alice"))
        await store.close()  # the hold is written out to its table

    def rows() -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])

    async def reserve_on_a_fresh_store(match: str) -> None:
        store = SqliteStore(str(path))
        try:
            with pytest.raises(StoreUnavailable, match=match):
                await reserve(store, POLICY, who("bob"))
            assert not store.db.in_transaction
        finally:
            store._checkpointer.close()  # type: ignore[union-attr]
            store.db.close()

    asyncio.run(write())
    with sqlite3.connect(path) as db:  # a hold row that is JSON, but not what p402 writes
        db.execute("UPDATE holds SET keys = '5'")
    asyncio.run(reserve_on_a_fresh_store("unreadable state in the store file"))
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM holds")
        db.execute("UPDATE meta SET v = '999' WHERE k = 'folded_seq'")  # past the ledger's end
    asyncio.run(reserve_on_a_fresh_store("folded_seq names ledger row 999, which is not there"))
    assert rows() == 1  # nothing was appended after a row that is not there
