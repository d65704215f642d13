"""The PostgreSQL budget store, shared by replicas.

Same methods and semantics as `SqliteStore`; where SQLite takes one write lock
for everything, PostgreSQL takes row locks in one global order:

    hold -> counters (sorted by budget_id, member, window_start) -> meta -> ledger head

A reservation locks its counter rows `FOR UPDATE` in sorted order, reads them,
runs the pure `decide`, and writes reservations, hold and ledger row before
COMMIT. A second replica racing for the same counters waits on the row locks
and then reads the committed balances (READ COMMITTED re-reads locked rows), so
no interleaving can admit more than the caps allow.

Every ledger append updates the one-row `ledger_head` in the statement that
inserts the row, and the server computes the row's hash there (`pgledger`).
So all replicas extend one hash chain, rows commit in seq order, and the head's
lock is held only from the transaction's last statements to its COMMIT, never
across a network round trip or Python code.

Round trips (statements are pipelined; see `pgpool`):
  reserve  2: [BEGIN, insert missing counters, lock counters] -> decide
              -> [reserve, hold or spend rollup, append, COMMIT]
  settle   2: [BEGIN, lock hold, lock its counters, settle them, delete hold]
              -> [spend rollup, append, COMMIT]
  record   1: [BEGIN, spend rollup (denials), append, COMMIT]
  policy changes 2; key changes 3 (the new policy version is read for the row); reads 1.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import partial
from importlib import resources
from typing import Any, Callable, Iterator, Mapping

import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from p402.core.decision import Decision, Plan
from p402.core.ids import new_id
from p402.core.ledger import GENESIS_HASH, ChainRow
from p402.core.periods import ledger_ts
from p402.core.policy import CounterKey
from p402.errors import Conflict, NotFound, StoreUnavailable
from p402.pipeline.ports import EntryBuilder, HoldInfo, KeyRecord, LedgerEvent, LedgerFilter
from p402.stores import pgsql as q
from p402.stores.pgledger import append, appended_seqs, dumps
from p402.stores.pgpool import DEFAULT_POOL_SIZE, Connection, PgPool, retrying, translate
from p402.stores.pgseal import PostgresSealLock
from p402.stores.layout import LEDGER_COLUMNS, hold_context, is_denial, ledger_query, spend_row

__all__ = ["PostgresStore", "CONNECT_TIMEOUT_S", "STATEMENT_TIMEOUT_MS", "EXPIRE_BATCH", "CHAIN_BATCH"]

CONNECT_TIMEOUT_S = 5  # a replica that cannot reach the store fails closed this fast
STATEMENT_TIMEOUT_MS = 10_000  # server-side bound on any one statement, lock waits included
CLIENT_CHECK_INTERVAL_MS = 1000  # how often a waiting server checks its client is still there (PostgreSQL 14+)
EXPIRE_BATCH = 500  # expired holds read per query
CHAIN_BATCH = 5000  # ledger rows per page when walking the chain
_SCHEMA_LOCK = 0x7034_3032  # advisory lock id ("p402") serialising schema creation across replicas
_SCHEMA_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PostgresStore:
    """Budget store over PostgreSQL; any number of replicas may share one database."""

    def __init__(self, url: str, pool: PgPool) -> None:
        self.url = url
        self.pool = pool

    @classmethod
    async def connect(cls, url: str, schema: str | None = None, *,
                      pool_size: int = DEFAULT_POOL_SIZE) -> "PostgresStore":
        """Open a store on `postgresql://user@host/db`, creating its tables if missing.

        `schema` puts every table in that PostgreSQL schema (created if missing)
        through the connections' search_path; tests use it to isolate themselves.
        """
        if not url.startswith(("postgresql://", "postgres://")):
            raise StoreUnavailable(f"store URL {url!r} must start with postgresql:// (or sqlite:///)")
        if schema is not None and not _SCHEMA_RE.fullmatch(schema):
            raise ValueError(f"schema name {schema!r} must match {_SCHEMA_RE.pattern}")
        try:
            given = conninfo_to_dict(url).get("options") or ""
        except psycopg.Error as exc:
            raise StoreUnavailable(f"store URL is not a valid PostgreSQL URL: {exc}") from exc
        # The URL's own `options` come after our default, so a URL may set its own
        # statement_timeout (or search_path); an explicit `schema` argument wins.
        options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} {given}".strip()
        if schema is not None:
            options += f" -c search_path={schema}"
        params: dict[str, Any] = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S,
                                  "application_name": "p402", "options": options}
        store = cls(url, PgPool(url, params, pool_size, setup=_setup_connection))
        try:
            await store._create_schema(schema)
        except BaseException:
            await store.close()
            raise
        return store

    async def _create_schema(self, schema: str | None) -> None:
        script = resources.files("p402.stores").joinpath("schema_postgres.sql").read_text(encoding="utf-8")
        conn = await self.pool.acquire()
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                if schema is not None:
                    await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                await conn.execute(script.encode())  # no parameters: sent as one multi-statement query
                encoding = await (await conn.execute("SHOW server_encoding")).fetchone()
                if encoding is None or encoding[0] != "UTF8":
                    # Ledger hashes are computed by the server over UTF-8 bytes.
                    raise StoreUnavailable(f"the database must use UTF8 encoding, not {encoding}")
                await conn.execute("INSERT INTO ledger_head (one, seq, hash) VALUES (TRUE, 0, %s) "
                                   "ON CONFLICT DO NOTHING", (GENESIS_HASH,))
        except psycopg.Error as exc:
            raise translate(exc) from exc
        finally:
            await self.pool.release(conn)

    # -- the hot path -------------------------------------------------------------

    async def reserve(self, plan: Plan, decide: Callable[[Plan, Mapping[CounterKey, tuple[int, int]]], Decision],
                      entry: EntryBuilder, lease_s: float, now: datetime) -> tuple[Decision, str | None]:
        """Lock the plan's counters, decide on their balances, reserve on allow: one transaction."""
        return await retrying(partial(self._reserve_once, plan, decide, entry, lease_s, now))

    async def _reserve_once(self, plan: Plan, decide: Callable[[Plan, Mapping[CounterKey, tuple[int, int]]], Decision],
                            entry: EntryBuilder, lease_s: float, now: datetime) -> tuple[Decision, str | None]:
        keys = q.lock_order(plan.keys)
        async with self.pool.transaction() as conn:
            locked = None
            if keys:
                # Insert-then-lock, both in sorted order: a new window's row must
                # exist before FOR UPDATE can lock it.
                await conn.execute(q.ADD_COUNTERS, q.key_arrays(keys))
                locked = await conn.execute(q.LOCK_COUNTERS, q.key_arrays(keys))
            rows = await locked.fetchall() if locked is not None else []  # round trip 1
            balances = {CounterKey(b, m, w): (settled, reserved) for b, m, w, settled, reserved in rows}
            decision = decide(plan, balances)
            hold_id = new_id("hold", now) if decision.allowed else None
            body = entry(decision, hold_id)
            if decision.allowed:
                amount = decision.estimate_nanos
                reserve_on = q.lock_order(decision.reserve_on)
                if reserve_on:
                    await conn.execute(q.RESERVE, (amount, *q.key_arrays(reserve_on)))
                context = hold_context(body)
                await conn.execute(q.ADD_HOLD, (
                    hold_id, body["event_id"], amount,
                    dumps([[k.budget_id, k.member, k.window] for k in reserve_on]).decode(),
                    now.timestamp() + lease_s, context["department"], dumps(context).decode()))
            else:
                await _count_spend(conn, body, 0, denied=True)
            appended = await append(conn, [body])
        await appended_seqs(appended, [body])  # COMMIT was round trip 2
        return decision, hold_id

    async def settle(self, hold_id: str, cost_nanos: int, entry: dict[str, Any]) -> bool:
        """Replace a hold by its actual cost (0 releases it); False if the hold is gone."""
        return await retrying(partial(self._settle_once, hold_id, cost_nanos, entry))

    async def _settle_once(self, hold_id: str, cost_nanos: int | None, entry: dict[str, Any]) -> bool:
        """Settle at `cost_nanos`, or at the hold's own amount when None (expiry)."""
        async with self.pool.transaction() as conn:
            hold = await conn.execute(q.LOCK_HOLD, (hold_id,))
            await conn.execute(q.LOCK_HOLD_COUNTERS, (hold_id,))
            await conn.execute(q.SETTLE_COUNTERS, (cost_nanos, hold_id))
            await conn.execute(q.DROP_HOLD, (hold_id,))
            row = await hold.fetchone()  # round trip 1
            if row is None:
                return False  # settled by someone else (or never existed): nothing above changed
            amount, context = row
            cost = amount if cost_nanos is None else cost_nanos
            await _count_spend(conn, {**context, **entry}, cost, denied=False)
            appended = await append(conn, [entry])
        await appended_seqs(appended, [entry])  # COMMIT was round trip 2
        return True

    async def record(self, entry: dict[str, Any]) -> int:
        """Append one ledger row (denials, policy changes); returns its seq."""
        return await retrying(partial(self._record_once, entry))

    async def _record_once(self, entry: dict[str, Any]) -> int:
        async with self.pool.transaction() as conn:
            if is_denial(entry):
                await _count_spend(conn, entry, 0, denied=True)
            appended = await append(conn, [entry])
        return await appended_seqs(appended, [entry])  # the one round trip

    async def expire_holds(self, now: datetime, make_entry: Callable[[HoldInfo], dict[str, Any]] | None = None) -> int:
        """Settle every hold whose lease ran out at its reserved amount; returns how many."""
        count = 0
        while True:
            rows = await self.pool.fetch("SELECT id, event_id, amount, keys, expires_at, context FROM holds "
                                         "WHERE expires_at < %s ORDER BY expires_at LIMIT %s",
                                         (now.timestamp(), EXPIRE_BATCH))
            for hold_id, event_id, amount, keys, expires_at, context in rows:
                info = HoldInfo(hold_id, event_id, amount, tuple(CounterKey(*k) for k in keys), expires_at, context)
                entry = make_entry(info) if make_entry else {"kind": "expire", "event_id": new_id("evt", now),
                                                             "ts": ledger_ts(now), "ref": event_id}
                # Another replica may expire the same hold; only one settles it.
                if await retrying(partial(self._settle_once, hold_id, None, entry)):
                    count += 1
            if len(rows) < EXPIRE_BATCH:
                return count

    async def write_out(self) -> int:
        """Counters, holds and spend are written in each request's own statements here: nothing waits."""
        return 0

    async def ping(self) -> None:
        """Raise StoreUnavailable if the store cannot be reached."""
        await self.pool.fetch("SELECT 1")

    # -- keys ---------------------------------------------------------------------

    async def find_key(self, secret_hash: str) -> KeyRecord | None:
        rows = await self.pool.fetch(f"SELECT {q.KEY_COLUMNS} FROM api_keys WHERE secret_hash = %s", (secret_hash,))
        return _key(rows[0]) if rows else None

    async def list_keys(self) -> list[KeyRecord]:
        return [_key(r) for r in await self.pool.fetch(f"SELECT {q.KEY_COLUMNS} FROM api_keys ORDER BY id")]

    async def put_key(self, key: KeyRecord, secret_hash: str, entry: dict[str, Any]) -> bool:
        """Create a key, or re-point an existing one; False when nothing changed."""
        return await retrying(partial(self._put_key_once, key, secret_hash, entry))

    async def _put_key_once(self, key: KeyRecord, secret_hash: str, entry: dict[str, Any]) -> bool:
        conflict = f"key {key.id}: that secret is already used by another key"
        async with self.pool.transaction(conflict=conflict) as conn:
            cur = await conn.execute("SELECT secret_hash, owner_kind, owner_id, department, employee, workflow, "
                                     "tenant FROM api_keys WHERE id = %s FOR UPDATE", (key.id,))
            row = await cur.fetchone()
            wanted = (secret_hash, key.owner_kind, key.owner_id, key.department, key.employee, key.workflow, key.tenant)
            if row is not None and tuple(row) == wanted:
                return False
            await conn.execute(q.UPSERT_KEY, (key.id, secret_hash, key.tenant, key.owner_kind, key.owner_id,
                                             key.department, key.employee, key.workflow, key.prefix, key.created_at))
            entry["policy_version"] = await _bumped_version(conn)
            appended = await append(conn, [entry])
        await appended_seqs(appended, [entry])  # a reused secret raised Conflict at COMMIT
        return True

    async def revoke_key(self, key_id: str, entry: dict[str, Any]) -> None:
        """Revoke a key; NotFound if it does not exist, Conflict if already revoked."""
        await retrying(partial(self._revoke_key_once, key_id, entry))

    async def _revoke_key_once(self, key_id: str, entry: dict[str, Any]) -> None:
        async with self.pool.transaction() as conn:
            cur = await conn.execute("SELECT revoked_at FROM api_keys WHERE id = %s FOR UPDATE", (key_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"key {key_id} does not exist")
            if row[0] is not None:
                raise Conflict(f"key {key_id} is already revoked")
            await conn.execute("UPDATE api_keys SET revoked_at = %s WHERE id = %s", (entry["ts"], key_id))
            entry["policy_version"] = await _bumped_version(conn)
            appended = await append(conn, [entry])
        await appended_seqs(appended, [entry])

    # -- policy objects -------------------------------------------------------------

    async def policy_version(self) -> int:
        rows = await self.pool.fetch(q.READ_VERSION)
        return int(rows[0][0]) if rows else 0

    async def objects(self, kind: str) -> dict[str, dict[str, Any]]:
        rows = await self.pool.fetch("SELECT id, body FROM objects WHERE kind = %s ORDER BY id", (kind,))
        return {r[0]: orjson.loads(r[1]) for r in rows}

    async def change_objects(self, changes: list[tuple[str, str, dict[str, Any] | None]],
                             entries: list[dict[str, Any]]) -> int:
        """Apply (kind, id, body-or-None-to-delete) changes with their ledger rows; one policy version."""
        return await retrying(partial(self._change_objects_once, changes, entries))

    async def _change_objects_once(self, changes: list[tuple[str, str, dict[str, Any] | None]],
                                   entries: list[dict[str, Any]]) -> int:
        async with self.pool.transaction() as conn:
            for kind, ident, body in changes:
                if body is None:
                    await conn.execute("DELETE FROM objects WHERE kind = %s AND id = %s", (kind, ident))
                else:
                    await conn.execute("INSERT INTO objects (kind, id, body) VALUES (%s, %s, %s) "
                                       "ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
                                       (kind, ident, dumps(body).decode()))
            row = await (await conn.execute(q.BUMP_VERSION if changes else q.READ_VERSION)).fetchone()
            version = int(row[0]) if row else 0
            for e in entries:
                e["policy_version"] = version
            appended = await append(conn, entries)
        await appended_seqs(appended, entries)
        return version

    # -- reading ------------------------------------------------------------------------

    async def balances(self, keys: list[CounterKey]) -> dict[CounterKey, tuple[int, int]]:
        rows = await self.pool.fetch(f"SELECT budget_id, member, window_start, settled, reserved FROM counters "
                                     f"WHERE (budget_id, member, window_start) IN ({q.KEYS})",
                                     q.key_arrays(list(keys)))
        found = {CounterKey(b, m, w): (s, r) for b, m, w, s, r in rows}
        return {k: found.get(k, (0, 0)) for k in keys}

    async def counters_of(self, budget_id: str, window: int) -> list[tuple[str, int, int]]:
        rows = await self.pool.fetch("SELECT member, settled, reserved FROM counters WHERE budget_id = %s "
                                     "AND window_start = %s ORDER BY member", (budget_id, window))
        return [(r[0], r[1], r[2]) for r in rows]

    async def spend(self, group_by: str, since_day: int, until_day: int) -> dict[str, tuple[int, int, int]]:
        """Settled cost, requests and denials per group between two days (rollups, not the ledger)."""
        column = "key_id" if group_by == "key" else group_by
        if column not in q.GROUPS:
            raise ValueError(f"cannot group spend by {group_by!r}")
        rows = await self.pool.fetch(f"SELECT {column}, SUM(cost)::bigint, SUM(requests)::bigint, "
                                     f"SUM(denied)::bigint FROM spend WHERE day >= %s AND day < %s "
                                     f"GROUP BY {column}", (since_day, until_day))
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    async def reserved_by(self, group_by: str) -> dict[str, int]:
        if group_by == "department":
            rows = await self.pool.fetch("SELECT department, SUM(amount)::bigint FROM holds GROUP BY department")
        else:
            rows = await self.pool.fetch("SELECT COALESCE(context->>%s, ''), SUM(amount)::bigint FROM holds "
                                         "GROUP BY 1", (group_by,))
        return {r[0]: r[1] for r in rows}

    async def live_holds(self) -> int:
        rows = await self.pool.fetch("SELECT COUNT(*) FROM holds")
        return int(rows[0][0])

    async def events(self, f: LedgerFilter) -> list[LedgerEvent]:
        query, args = ledger_query(f, "%s")
        return [LedgerEvent(r[0], orjson.loads(r[1]), r[2], r[3]) for r in await self.pool.fetch(query, args)]

    async def event(self, event_id: str) -> list[LedgerEvent]:
        rows = await self.pool.fetch("SELECT seq, body, hash, prev_hash FROM ledger WHERE event_id = %s "
                                     "ORDER BY seq", (event_id,))
        return [LedgerEvent(r[0], orjson.loads(r[1]), r[2], r[3]) for r in rows]

    def seal_lock(self) -> PostgresSealLock:
        """The lock that elects this ledger's one sealer among replicas (see p402.stores.pgseal)."""
        return PostgresSealLock(self.url, self.pool.params)

    def chain(self, batch: int = CHAIN_BATCH, after_seq: int = 0, all_columns: bool = True) -> Iterator[ChainRow]:
        """Ledger rows with seq > after_seq in seq order, in bounded batches (verify, export, sealing);
        `all_columns=False`: of the indexed columns, only `kind` (what the sealer reads).

        Synchronous (the CLI verifies with it), on a connection of its own that
        is closed when the iteration ends or is abandoned. Appends commit in seq
        order (the head's row lock), so a reader never sees a gap that later fills in.
        """
        names = LEDGER_COLUMNS if all_columns else {"kind": "kind"}
        cols = ", ".join(names)
        try:
            conn = psycopg.connect(self.url, **self.pool.params)
        except psycopg.Error as exc:
            raise translate(exc) from exc
        try:
            last = after_seq
            while True:
                rows = conn.execute(f"SELECT seq, body, prev_hash, hash, {cols} FROM ledger WHERE seq > %s "
                                    f"ORDER BY seq LIMIT %s", (last, batch)).fetchall()
                if not rows:
                    return
                for r in rows:
                    yield ChainRow(r[0], r[1].encode(), r[2], r[3], dict(zip(names.values(), r[4:])))
                last = rows[-1][0]
        except psycopg.Error as exc:
            raise translate(exc) from exc
        finally:
            conn.close()

    async def close(self) -> None:
        await self.pool.close()


async def _setup_connection(conn: Connection) -> None:
    """Make the server notice a vanished client while the client's transaction waits for a lock.

    A transaction's last batch carries its COMMIT. Without this check, a server
    waiting on a lock for a client that has timed out or lost its network would
    still commit once the lock is granted: a reservation the gateway believes
    failed (it becomes an orphan, settled when its lease runs out). With it, the
    server aborts such a transaction within CLIENT_CHECK_INTERVAL_MS.
    """
    if conn.info.server_version >= 140000:  # the setting exists from PostgreSQL 14 on
        await conn.execute(f"SET client_connection_check_interval = {CLIENT_CHECK_INTERVAL_MS}")


async def _bumped_version(conn: Connection) -> int:
    """Bump the policy version; the new one, for the change's ledger row (a round trip: key changes are rare)."""
    row = await (await conn.execute(q.BUMP_VERSION)).fetchone()
    return int(row[0]) if row else 0


async def _count_spend(conn: Connection, body: Mapping[str, Any], cost_nanos: int, denied: bool) -> None:
    await conn.execute(q.COUNT_SPEND, spend_row(body, cost_nanos, denied))


def _key(row: tuple[Any, ...]) -> KeyRecord:
    return KeyRecord(id=row[0], tenant=row[1], owner_kind=row[2], owner_id=row[3], department=row[4],
                     employee=row[5], workflow=row[6], revoked=row[7] is not None, created_at=row[8], prefix=row[9])

