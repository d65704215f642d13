"""The embedded SQLite budget store.

Called inline on the event loop: one short `BEGIN IMMEDIATE` transaction per
reservation or settlement costs tens of microseconds, less than a hop to a
thread. `BEGIN IMMEDIATE` takes SQLite's single write lock up front, so the
balances a decision reads cannot change before its reservation is written, on
one process or many sharing the file (WAL mode).

The store's state is a fold of the ledger (`p402.stores.fold`). Every ledger
row that changes state carries its effects in its `effects` column, written in
the same transaction: a reservation's row opens a hold and adds its estimate to
each counter's reserved amount; a settlement's row closes the hold, moves the
amounts from reserved to settled and adds to a spend rollup; a denial's row
counts the denial. So a request writes exactly its two ledger rows. The
`counters`, `holds` and `spend` tables are the fold written out up to the row
named by meta `folded_seq`, in batches (`write_out`: the gateway calls it
every `wiring.WRITE_OUT_INTERVAL_S`, every reader of those tables calls it
first, and so does `close`); a batch carries every request since the last one,
and a hold opened and closed in between never touches the holds table.

Each connection keeps the fold in memory: exact balances for the counters it
has used, every live hold, and the deltas since `folded_seq`. Each transaction
first asks SQLite for `PRAGMA data_version`, which changes when any *other*
connection (another replica, a CLI) has committed; if it has, the rows written
since are folded in before anything is decided. Replicas on one file therefore
decide on the same state as one process would, and a crash loses nothing: a row
and its effects commit together, and a restarted store folds forward from
`folded_seq`.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, cast

import orjson

from p402.core.decision import Decision, Plan
from p402.core.ids import new_id
from p402.core.ledger import GENESIS_HASH, ChainRow, chain_hash
from p402.core.periods import ledger_ts
from p402.core.policy import CounterKey
from p402.stores.fold import Fold, Hold, Key, parse_effects
from p402.errors import Conflict, NotFound, StoreError, StoreUnavailable
from p402.stores.layout import LEDGER_COLUMNS, hold_context, is_denial, ledger_query, spend_row
from p402.pipeline.ports import EntryBuilder, HoldInfo, KeyRecord, LedgerEvent, LedgerFilter

__all__ = ["SqliteStore", "LEDGER_COLUMNS", "DEFAULT_BUSY_TIMEOUT_MS"]

_INSERT_LEDGER = ("INSERT INTO ledger (seq, body, prev_hash, hash, effects, " + ", ".join(LEDGER_COLUMNS)
                  + ") VALUES (" + ", ".join("?" * (5 + len(LEDGER_COLUMNS))) + ")")
# How long a writer waits for another process's write lock before the store counts
# as unavailable (and the request fails closed). Write transactions here take
# tens of microseconds, so a wait this long means something is wrong. The wait
# blocks this event loop: keep it short. Set with `?busy_timeout_ms=` on the URL.
DEFAULT_BUSY_TIMEOUT_MS = 1000
# WAL checkpoints copy the log back into the database file and fsync it: a few
# milliseconds each. Left to SQLite, one runs inside whichever COMMIT crosses
# `wal_autocheckpoint` pages, i.e. inside a request (it was most of the
# decision's p99). A thread with its own connection runs PASSIVE checkpoints
# (they never block a writer) every CHECKPOINT_INTERVAL_S instead; the
# automatic threshold is raised to WAL_AUTOCHECKPOINT_PAGES, a safety net that
# bounds the WAL if that thread ever falls behind.
CHECKPOINT_INTERVAL_S = 0.05
WAL_AUTOCHECKPOINT_PAGES = 10_000
_ADD_COUNTER = ("INSERT INTO counters (budget_id, member, window, settled, reserved) VALUES (?,?,?,?,?) "
                "ON CONFLICT DO UPDATE SET settled = settled + excluded.settled, "
                "reserved = reserved + excluded.reserved")
_ADD_SPEND = ("INSERT INTO spend (day, department, employee, project, customer, feature, workflow, key_id, model, "
              "cost, requests, denied) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
              "cost = cost + excluded.cost, requests = requests + excluded.requests, denied = denied + excluded.denied")
# Exact balances kept in memory (module docstring); dropped, and read again as needed, when more.
MAX_CACHED_COUNTERS = 65_536
# Rows whose effects may wait in memory before a transaction writes them out itself (the
# gateway's write-outs come long before: this bounds memory where nobody calls write_out).
MAX_PENDING_ROWS = 20_000


def _dumps(value: object) -> bytes:
    # Sorted keys and compact separators: byte-identical to core.ledger.canonical
    # for the str/int/bool/None/list/dict values ledger bodies are made of.
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class SqliteStore:
    """Budget store over one SQLite file (or `:memory:` for throwaway use)."""

    def __init__(self, path: str, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, checkpoints: bool = True) -> None:
        """`checkpoints=False` for a short-lived reader (an export): no WAL checkpointer thread."""
        self.path = path
        if path != ":memory:":
            parent = Path(path).parent
            if not parent.exists():
                raise StoreUnavailable(f"cannot open store {path}: directory {parent} does not exist")
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(resources.files("p402.stores").joinpath("schema_sqlite.sql").read_text(encoding="utf-8"))
            self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            _add_effects_column(self.db)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open store {path}: {exc}") from exc
        self._checkpointer = _Checkpointer(path) if path != ":memory:" and checkpoints else None
        # The fold (module docstring): current as of ledger row `fold.seq` while data_version is `_seen`.
        self._seen: int | None = None  # None: start again from the tables
        self.fold = Fold()

    @classmethod
    def from_url(cls, url: str, checkpoints: bool = True) -> "SqliteStore":
        """`sqlite:///./p402.db` (relative), `sqlite:////var/p402.db` (absolute), `sqlite:///:memory:`."""
        if not url.startswith("sqlite:///"):
            raise StoreUnavailable(f"store URL {url!r} must start with sqlite:/// (or postgresql://)")
        path, _, query = url[len("sqlite:///"):].partition("?")
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        try:
            timeout = int(params.pop("busy_timeout_ms", DEFAULT_BUSY_TIMEOUT_MS))
        except ValueError:
            raise StoreUnavailable(f"store URL {url!r}: busy_timeout_ms must be an integer") from None
        if params:
            raise StoreUnavailable(f"store URL {url!r}: unknown parameter(s) {', '.join(params)}")
        return cls(path, timeout, checkpoints)

    # -- transactions and the fold (module docstring) -------------------------------

    def _txn(self) -> "_Txn":
        return _Txn(self)

    def _began(self) -> None:
        """Inside a fresh write transaction: fold in whatever another connection wrote."""
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._seen:  # another connection committed, or memory was dropped (None)
            self._catch_up(cold=self._seen is None)
            self._seen = version
        fold = self.fold
        if len(fold.counters) > MAX_CACHED_COUNTERS:
            fold.counters.clear()  # read again from the table and the deltas, as needed
        if len(fold.rows) > MAX_PENDING_ROWS:
            self._write_out()

    def _forget(self) -> None:
        """After a transaction that did not commit: what memory holds may be wrong; start again."""
        self._seen = None

    def _catch_up(self, cold: bool) -> None:
        """Bring the fold up to the ledger's last row (inside a write transaction); `cold`: start
        again from the tables."""
        row = self.db.execute("SELECT v FROM meta WHERE k='folded_seq'").fetchone()
        written_seq = int(row[0]) if row else 0
        fold = self.fold
        if cold or written_seq < fold.written_seq:
            head = self.db.execute("SELECT hash FROM ledger WHERE seq=?", (written_seq,)).fetchone()
            if head is None and written_seq:  # appending after a missing row would fork the chain
                raise StoreUnavailable(f"meta folded_seq names ledger row {written_seq}, which is not there; "
                                       f"the store file was changed outside p402")
            holds = {r[0]: Hold(r[1], r[2], tuple((k[0], k[1], k[2]) for k in orjson.loads(r[3])), r[4],
                                orjson.loads(r[5]))
                     for r in self.db.execute("SELECT id, event_id, amount, keys, expires_at, context FROM holds")}
            fold.restart(written_seq, head[0] if head else GENESIS_HASH, holds)
        for seq, digest, effects in self.db.execute("SELECT seq, hash, effects FROM ledger WHERE seq > ? "
                                                    "ORDER BY seq", (fold.seq,)):
            try:
                fold.apply(seq, digest, parse_effects(effects) if effects else None)
            except (ValueError, TypeError, KeyError, IndexError) as exc:  # memory is dropped by the caller
                raise StoreUnavailable(f"ledger row {seq}: its effects cannot be read ({exc!r}); "
                                       f"the store file was changed outside p402") from None
        if written_seq > fold.written_seq:  # another connection wrote the fold out meanwhile
            fold.written_through(written_seq)

    def _balances(self, keys: Sequence[Key]) -> dict[Key, tuple[int, int]]:
        """The exact (settled, reserved) of `keys` (inside a transaction); returns the whole cache."""
        fold = self.fold
        missing = [k for k in keys if k not in fold.counters]
        if missing:
            # One statement for all the counters not in memory (a UNION ALL of primary-key
            # lookups), not one per counter: each statement costs microseconds of overhead.
            table = {(b, m, w): (settled, reserved) for b, m, w, settled, reserved in self.db.execute(
                _select_counters(len(missing)), [v for k in missing for v in k])}
            for k in missing:
                fold.balance(k, table.get(k, (0, 0)))  # a window nobody has spent in has no row
        return fold.counters

    def _write_out(self) -> int:
        """Write the fold into the counters, holds and spend tables (inside a transaction)."""
        fold = self.fold
        if fold.written_seq == fold.seq:
            fold.written()  # another connection wrote everything out: drop the (zero) sums it left
            return 0
        counters = fold.counter_changes()
        self.db.executemany(_ADD_COUNTER, counters)
        self.db.executemany(_ADD_SPEND, fold.spend_changes())
        in_table = {r[0] for r in self.db.execute("SELECT id FROM holds")}
        self.db.executemany("DELETE FROM holds WHERE id=?", [(h,) for h in in_table - fold.holds.keys()])
        self.db.executemany("INSERT INTO holds (id, event_id, amount, keys, expires_at, department, context) "
                            "VALUES (?,?,?,?,?,?,?)",
                            [(h, x.event_id, x.amount, _dumps(x.keys).decode(), x.expires_at, x.department,
                              _dumps(x.context).decode()) for h, x in fold.holds.items() if h not in in_table])
        self.db.execute("INSERT INTO meta (k, v) VALUES ('folded_seq', ?) ON CONFLICT DO UPDATE SET v=excluded.v",
                        (str(fold.seq),))
        fold.written()
        return len(counters)

    async def write_out(self) -> int:
        """Bring the counters, holds and spend tables up to date with the ledger; how many counters it wrote."""
        with self._txn():
            return self._write_out()

    def _append(self, entry: dict[str, Any], effects: dict[str, Any] | None = None) -> int:
        """Append one ledger row (and what it changes) inside the caller's transaction."""
        fold = self.fold
        seq, prev = fold.seq + 1, fold.hash
        entry["seq"] = seq
        body = _dumps(entry)
        digest = chain_hash(prev, body)
        # Every row has effects, `{}` when it changes nothing: a row without is an earlier p402's.
        self.db.execute(_INSERT_LEDGER, (seq, body.decode(), prev, digest, _dumps(effects or {}).decode(),
                                         *(entry.get(k) for k in LEDGER_COLUMNS.values())))
        fold.apply(seq, digest, effects or None)
        return seq

    # -- the hot path -----------------------------------------------------------

    async def reserve(self, plan: Plan, decide: Callable[[Plan, Mapping[CounterKey, tuple[int, int]]], Decision],
                      entry: EntryBuilder, lease_s: float, now: datetime) -> tuple[Decision, str | None]:
        with self._txn():
            balances = self._balances(plan.keys)
            decision = decide(plan, cast(Mapping[CounterKey, tuple[int, int]], balances))
            hold_id = new_id("hold", now) if decision.allowed else None
            body = entry(decision, hold_id)
            if decision.allowed:
                amount = decision.estimate_nanos
                keys = [(k[0], k[1], k[2]) for k in decision.reserve_on]  # plain tuples: JSON arrays
                context = hold_context(body)
                effects = {"c": [(*k, 0, amount) for k in keys],
                           "h": (hold_id, body["event_id"], amount, keys, now.timestamp() + lease_s, context)}
            else:
                effects = {"s": spend_row(body, 0, denied=True)}
            self._append(body, effects)
        return decision, hold_id

    async def settle(self, hold_id: str, cost_nanos: int, entry: dict[str, Any]) -> bool:
        with self._txn():
            return self._settle_in_txn(hold_id, cost_nanos, entry)

    def _settle_in_txn(self, hold_id: str, cost_nanos: int, entry: dict[str, Any]) -> bool:
        hold = self.fold.holds.get(hold_id)
        if hold is None:
            return False
        self._append(entry, {"c": [(*k, cost_nanos, -hold.amount) for k in hold.keys], "x": hold_id,
                             "s": spend_row({**hold.context, **entry}, cost_nanos, denied=False)})
        return True

    async def record(self, entry: dict[str, Any]) -> int:
        with self._txn():
            return self._append(entry, {"s": spend_row(entry, 0, denied=True)} if is_denial(entry) else None)

    async def expire_holds(self, now: datetime, make_entry: Callable[[HoldInfo], dict[str, Any]] | None = None) -> int:
        with self._txn():
            expired = [(h, x) for h, x in self.fold.holds.items() if x.expires_at < now.timestamp()]
        count = 0
        for hold_id, hold in expired:
            info = HoldInfo(hold_id, hold.event_id, hold.amount, tuple(CounterKey(*k) for k in hold.keys),
                            hold.expires_at, hold.context)
            entry = make_entry(info) if make_entry else {"kind": "expire", "event_id": new_id("evt", now),
                                                         "ts": ledger_ts(now), "ref": hold.event_id}
            with self._txn():
                if self._settle_in_txn(hold_id, hold.amount, entry):
                    count += 1
        return count

    async def ping(self) -> None:
        try:
            self.db.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store {self.path} unreachable: {exc}") from exc

    # -- keys -------------------------------------------------------------------

    async def find_key(self, secret_hash: str) -> KeyRecord | None:
        row = self.db.execute("SELECT id, tenant, owner_kind, owner_id, department, employee, workflow, revoked_at, "
                              "created_at, prefix FROM api_keys WHERE secret_hash=?", (secret_hash,)).fetchone()
        return _key(row) if row else None

    async def list_keys(self) -> list[KeyRecord]:
        rows = self.db.execute("SELECT id, tenant, owner_kind, owner_id, department, employee, workflow, revoked_at, "
                               "created_at, prefix FROM api_keys ORDER BY id").fetchall()
        return [_key(r) for r in rows]

    async def put_key(self, key: KeyRecord, secret_hash: str, entry: dict[str, Any]) -> bool:
        """Create a key, or re-point an existing one; False when nothing changed."""
        with self._txn():
            row = self.db.execute("SELECT secret_hash, owner_kind, owner_id, department, employee, workflow, tenant "
                                  "FROM api_keys WHERE id=?", (key.id,)).fetchone()
            wanted = (secret_hash, key.owner_kind, key.owner_id, key.department, key.employee, key.workflow, key.tenant)
            if row is not None and tuple(row) == wanted:
                return False
            try:
                self.db.execute("INSERT INTO api_keys (id, secret_hash, tenant, owner_kind, owner_id, department, "
                                "employee, workflow, prefix, created_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
                                "ON CONFLICT (id) DO UPDATE SET secret_hash=excluded.secret_hash, "
                                "owner_kind=excluded.owner_kind, owner_id=excluded.owner_id, "
                                "department=excluded.department, employee=excluded.employee, "
                                "workflow=excluded.workflow, tenant=excluded.tenant",
                                (key.id, secret_hash, key.tenant, key.owner_kind, key.owner_id, key.department,
                                 key.employee, key.workflow, key.prefix, key.created_at))
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"key {key.id}: that secret is already used by another key") from exc
            entry["policy_version"] = self._bump_version()
            self._append(entry)
            return True

    async def revoke_key(self, key_id: str, entry: dict[str, Any]) -> None:
        with self._txn():
            row = self.db.execute("SELECT revoked_at FROM api_keys WHERE id=?", (key_id,)).fetchone()
            if row is None:
                raise NotFound(f"key {key_id} does not exist")
            if row[0] is not None:
                raise Conflict(f"key {key_id} is already revoked")
            self.db.execute("UPDATE api_keys SET revoked_at=? WHERE id=?", (entry["ts"], key_id))
            entry["policy_version"] = self._bump_version()
            self._append(entry)

    # -- policy objects -----------------------------------------------------------

    def _bump_version(self) -> int:
        row = self.db.execute("SELECT v FROM meta WHERE k='policy_version'").fetchone()
        version = (int(row[0]) if row else 0) + 1
        self.db.execute("INSERT INTO meta (k, v) VALUES ('policy_version', ?) ON CONFLICT DO UPDATE SET v=excluded.v",
                        (str(version),))
        return version

    async def policy_version(self) -> int:
        row = self.db.execute("SELECT v FROM meta WHERE k='policy_version'").fetchone()
        return int(row[0]) if row else 0

    async def objects(self, kind: str) -> dict[str, dict[str, Any]]:
        rows = self.db.execute("SELECT id, body FROM objects WHERE kind=? ORDER BY id", (kind,)).fetchall()
        return {r[0]: orjson.loads(r[1]) for r in rows}

    async def change_objects(self, changes: list[tuple[str, str, dict[str, Any] | None]],
                             entries: list[dict[str, Any]]) -> int:
        """Apply (kind, id, body-or-None-to-delete) changes with their ledger rows; one policy version."""
        with self._txn():
            for kind, ident, body in changes:
                if body is None:
                    self.db.execute("DELETE FROM objects WHERE kind=? AND id=?", (kind, ident))
                else:
                    self.db.execute("INSERT INTO objects (kind, id, body) VALUES (?,?,?) "
                                    "ON CONFLICT DO UPDATE SET body=excluded.body",
                                    (kind, ident, _dumps(body).decode()))
            version = self._bump_version() if changes else await self.policy_version()
            for e in entries:
                e["policy_version"] = version
                self._append(e)
            return version

    # -- reading ----------------------------------------------------------------------

    async def balances(self, keys: list[CounterKey]) -> dict[CounterKey, tuple[int, int]]:
        with self._txn():
            known = self._balances(keys)
            return {k: known[k] for k in keys}

    async def counters_of(self, budget_id: str, window: int) -> list[tuple[str, int, int]]:
        with self._txn():
            self._write_out()
            return self.db.execute("SELECT member, settled, reserved FROM counters WHERE budget_id=? AND window=? "
                                   "ORDER BY member", (budget_id, window)).fetchall()

    async def spend(self, group_by: str, since_day: int, until_day: int) -> dict[str, tuple[int, int, int]]:
        """Settled cost, requests and denials per group between two days (rollups, not the ledger)."""
        column = "key_id" if group_by == "key" else group_by
        if column not in ("department", "employee", "project", "customer", "feature", "workflow", "key_id", "model"):
            raise ValueError(f"cannot group spend by {group_by!r}")
        with self._txn():
            self._write_out()
            rows = self.db.execute(f"SELECT {column}, SUM(cost), SUM(requests), SUM(denied) FROM spend "
                                   f"WHERE day >= ? AND day < ? GROUP BY {column}", (since_day, until_day)).fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    async def reserved_by(self, group_by: str) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._txn():
            for hold in self.fold.holds.values():
                name = hold.department if group_by == "department" else hold.context.get(group_by, "")
                out[name] = out.get(name, 0) + hold.amount
        return out

    async def live_holds(self) -> int:
        with self._txn():
            return len(self.fold.holds)

    async def events(self, f: LedgerFilter) -> list[LedgerEvent]:
        sql, args = ledger_query(f, "?")
        return [LedgerEvent(r[0], orjson.loads(r[1]), r[2], r[3]) for r in self.db.execute(sql, args)]

    async def event(self, event_id: str) -> list[LedgerEvent]:
        rows = self.db.execute("SELECT seq, body, hash, prev_hash FROM ledger WHERE event_id=? ORDER BY seq",
                               (event_id,)).fetchall()
        return [LedgerEvent(r[0], orjson.loads(r[1]), r[2], r[3]) for r in rows]

    def chain(self, batch: int = 5000, after_seq: int = 0, all_columns: bool = True) -> Iterator[ChainRow]:
        """Ledger rows with seq > after_seq in seq order, in bounded batches (verify, export, sealing);
        `all_columns=False`: of the indexed columns, only `kind` (what the sealer reads)."""
        names = LEDGER_COLUMNS if all_columns else {"kind": "kind"}
        cols = ", ".join(names)
        last = after_seq
        while True:
            rows = self.db.execute(f"SELECT seq, body, prev_hash, hash, {cols} FROM ledger WHERE seq > ? "
                                   f"ORDER BY seq LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            for r in rows:
                yield ChainRow(r[0], r[1].encode(), r[2], r[3], dict(zip(names.values(), r[4:])))
            last = rows[-1][0]

    async def close(self) -> None:
        try:
            await self.write_out()  # leave the tables current for whoever reads the file
        except StoreError:
            pass  # the ledger has every effect; the next store to open the file folds them in
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.db.close()


_SELECT_COUNTER = "SELECT budget_id, member, window, settled, reserved FROM counters WHERE budget_id=? AND member=? AND window=?"
_SELECT_COUNTERS: dict[int, str] = {}


def _select_counters(n: int) -> str:
    sql = _SELECT_COUNTERS.get(n)
    if sql is None:
        sql = _SELECT_COUNTERS[n] = " UNION ALL ".join([_SELECT_COUNTER] * n)
    return sql


class _Checkpointer:
    """Runs PASSIVE WAL checkpoints off the request path, on a thread with its own connection."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="p402-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return  # the automatic checkpoint still bounds the WAL
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL_S):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    pass  # busy or gone: the next round (or the automatic checkpoint) catches up
        finally:
            db.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _Txn:
    """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on error; SQLite errors become StoreError.
    A transaction that does not commit also drops what the store remembered of its writes."""

    __slots__ = ("store", "db")

    def __init__(self, store: SqliteStore) -> None:
        self.store, self.db = store, store.db

    def __enter__(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.store._began()
        except BaseException as exc:
            # Whatever failed (SQLite, or a ledger row the fold cannot read), the write lock
            # must not stay held: every other process on the file would wait for it.
            self.store._forget()
            self._rollback()
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"store unavailable: {exc}") from exc
            if isinstance(exc, (ValueError, TypeError, KeyError, IndexError)):  # a table p402 did not write
                raise StoreUnavailable(f"store unavailable: unreadable state in the store file ({exc!r})") from exc
            raise

    def _rollback(self) -> None:
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled back (a failed COMMIT on a full disk or an I/O error)

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error as err:
                self.store._forget()
                self._rollback()
                raise StoreUnavailable(f"store unavailable: {err}") from err
        self.store._forget()
        self._rollback()
        if isinstance(exc, sqlite3.OperationalError):
            raise StoreUnavailable(f"store unavailable: {exc}") from exc
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"store error: {exc}") from exc


# An earlier p402 still running on an upgraded file would write rows without effects (which the
# fold would read as changing nothing) and keep its balances in tables that lag: both sides would
# then decide on less than was reserved. This makes such a process's writes fail (closed) instead.
_REFUSE_ROWS_WITHOUT_EFFECTS = (
    "CREATE TRIGGER IF NOT EXISTS ledger_rows_need_effects BEFORE INSERT ON ledger "
    "WHEN NEW.effects IS NULL BEGIN "
    "SELECT RAISE(ABORT, 'this store file keeps its balances as a fold of the ledger: every p402 "
    "process that writes to it must be of that version or later'); END")


def _add_effects_column(db: sqlite3.Connection) -> None:
    """A store written before its state was a fold of the ledger: its tables already hold every
    row's effects, so the fold starts after its last row. Earlier p402s are kept from writing to it."""
    if any(r[1] == "effects" for r in db.execute("PRAGMA table_info(ledger)")):
        db.execute(_REFUSE_ROWS_WITHOUT_EFFECTS)  # IF NOT EXISTS: writes nothing once it is there
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if not any(r[1] == "effects" for r in db.execute("PRAGMA table_info(ledger)")):  # another process?
            db.execute("ALTER TABLE ledger ADD COLUMN effects TEXT")
            db.execute("DROP INDEX IF EXISTS holds_expiry")  # older files' index, no longer read
            db.execute("INSERT INTO meta (k, v) SELECT 'folded_seq', COALESCE(MAX(seq), 0) FROM ledger "
                       "WHERE true ON CONFLICT DO UPDATE SET v=excluded.v")
        db.execute(_REFUSE_ROWS_WITHOUT_EFFECTS)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _key(row: tuple[Any, ...]) -> KeyRecord:
    return KeyRecord(id=row[0], tenant=row[1], owner_kind=row[2], owner_id=row[3], department=row[4],
                     employee=row[5], workflow=row[6], revoked=row[7] is not None, created_at=row[8], prefix=row[9])


