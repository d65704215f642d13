"""Appending to the ledger's hash chain on PostgreSQL.

One statement per row moves the one-row `ledger_head` and inserts the row, and
the server computes the row's hash, so the head's row lock is taken in the
transaction's last batch and released by the COMMIT that ends it: appends from
all replicas form one chain, commit in seq order, and never hold the head
across a network round trip. The hash is `core.ledger.chain_hash` over the same
canonical bytes SqliteStore writes, so `core.ledger.verify_chain` checks both.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg

from p402.errors import StoreError
from p402.stores.pgpool import Connection
from p402.stores.layout import LEDGER_COLUMNS

__all__ = ["APPEND", "dumps", "split_body", "append", "appended_seqs"]

_SEQ_MARK = 8_346_127_905_512_384_031  # stands in for a body's seq while it is split around it

# Appends one ledger row and moves the head, in one statement, so the head's row lock is
# taken in the transaction's last round trip and held only until its COMMIT right after.
# The body arrives split around its seq (`pre` ends with '"seq":'), because the seq is
# only known here; the hash is core.ledger.chain_hash computed by the server:
# sha256(prev_hash || "\n" || body) over UTF-8 bytes, as lowercase hex. The scalar
# subqueries make a missing head row a NOT NULL violation instead of a silent no-op.
APPEND = (
    "WITH head AS (UPDATE ledger_head SET seq = seq + 1, prev_hash = hash, hash = encode(sha256(convert_to("
    "hash || E'\\n' || %(pre)s::text || (seq + 1)::text || %(post)s::text, 'UTF8')), 'hex') "
    "RETURNING seq, prev_hash, hash) "
    "INSERT INTO ledger (seq, body, prev_hash, hash, " + ", ".join(LEDGER_COLUMNS) + ") VALUES ("
    "(SELECT seq FROM head), %(pre)s::text || (SELECT seq FROM head)::text || %(post)s::text, "
    "(SELECT prev_hash FROM head), (SELECT hash FROM head), "
    + ", ".join(f"%({c})s" for c in LEDGER_COLUMNS) + ") RETURNING seq")


def dumps(value: object) -> bytes:
    """Canonical JSON: sorted keys, compact separators; byte-identical to SqliteStore's
    bodies and to core.ledger.canonical for the values ledger bodies are made of."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def split_body(entry: dict[str, Any]) -> tuple[str, str]:
    """The canonical body as the text before and after its seq's digits.

    Byte for byte `dumps({**entry, "seq": seq})` once the server joins the two
    parts around the seq it assigns; the ledger hashes exactly that.
    """
    text = dumps({**entry, "seq": _SEQ_MARK}).decode()
    pre, mark, post = text.partition(f'"seq":{_SEQ_MARK}')
    if not mark or str(_SEQ_MARK) in pre or str(_SEQ_MARK) in post:
        raise StoreError("a ledger body cannot be split around its seq")  # only if a body carried the mark
    return pre + '"seq":', post


async def append(conn: Connection, entries: list[dict[str, Any]]) -> list[psycopg.AsyncCursor[Any]]:
    """Queue one APPEND per entry (each extends the chain past the one before)."""
    cursors = []
    for entry in entries:
        pre, post = split_body(entry)
        params = {"pre": pre, "post": post, **{column: entry.get(key) for column, key in LEDGER_COLUMNS.items()}}
        cursors.append(await conn.execute(APPEND, params))
    return cursors


async def appended_seqs(cursors: list[psycopg.AsyncCursor[Any]], entries: list[dict[str, Any]]) -> int:
    """After COMMIT: give each entry the seq it was stored under, as SqliteStore does; returns the last."""
    seq = 0
    for cursor, entry in zip(cursors, entries):
        row = await cursor.fetchone()
        if row is None:
            raise StoreError("a ledger append returned no seq")
        seq = entry["seq"] = int(row[0])
    return seq
