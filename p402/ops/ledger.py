"""Ledger evidence for the admin API and the CLI: checkpoint info, inclusion proofs, exports.

Proofs are computed on demand from the stored row hashes (RFC 6962 audit paths
against the checkpoint that covers the row). That reads the hashes of every row
the checkpoint covers: fine for an auditor's question, not for the hot path,
which never calls it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from p402.config import Config
from p402.core.ledger import ChainRow
from p402.pipeline.ports import LedgerFilter
from p402.prove.checkpoints import latest_checkpoint
from p402.prove.export import csv_lines, jsonl_lines
from p402.prove.focus import focus_lines
from p402.prove.merkle import consistency_proof, inclusion_proof, leaf_hash, root_of
from p402.prove.signing import Signer

__all__ = ["checkpoint_info", "inclusion", "consistency", "export_lines", "EXPORT_FORMATS", "MAX_CHECKPOINTS_SCANNED"]

EXPORT_FORMATS = ("jsonl", "csv", "focus")
MAX_CHECKPOINTS_SCANNED = 1000


def _public(signer: Signer | None) -> dict[str, Any]:
    if signer is None:
        return {}
    return {"public_key": signer.public_hex, "public_key_pem": signer.public_pem, "key_id": signer.key_id}


async def checkpoint_info(store: Any, signer: Signer | None) -> dict[str, Any]:
    """The newest checkpoint and the key that signs checkpoints."""
    return {"checkpoint": await latest_checkpoint(store), **_public(signer)}


async def inclusion(store: Any, seq: int) -> dict[str, Any] | None:
    """The inclusion proof of row `seq` in the earliest checkpoint that covers it, or None if none does yet."""
    checkpoints = await store.events(LedgerFilter(kind="checkpoint", limit=MAX_CHECKPOINTS_SCANNED))
    covering = [c.body for c in checkpoints if int(c.body["tree_size"]) >= seq]
    if not covering:
        return None
    cp = min(covering, key=lambda b: int(b["tree_size"]))
    size = int(cp["tree_size"])
    leaves = [leaf_hash(bytes.fromhex(row.hash)) for row in _rows_until(store, size)]
    if len(leaves) != size or root_of(leaves).hex() != cp["root"]:
        # The rows no longer hash to what was signed: no proof can be honest.
        return {"checkpoint_event_id": cp["event_id"], "error": "the stored rows do not match this signed "
                                                                "checkpoint; run p402 ledger verify"}
    path = inclusion_proof(leaves, seq - 1)
    return {"checkpoint_event_id": cp["event_id"], "tree_size": size, "root": cp["root"], "leaf_index": seq - 1,
            "leaf_hash": leaves[seq - 1].hex(), "audit_path": [h.hex() for h in path],
            "algorithm": "RFC 6962 Merkle audit path; leaves are the rows' SHA-256 hashes (bytes)"}


async def consistency(store: Any, old_size: int, new_size: int) -> dict[str, Any] | None:
    """A consistency proof between the checkpoints of `old_size` and `new_size` rows (None if either is unknown).

    It proves the older signed tree is a prefix of the newer one: nothing the
    older checkpoint covered was edited, removed or reordered since.
    """
    checkpoints = await store.events(LedgerFilter(kind="checkpoint", limit=MAX_CHECKPOINTS_SCANNED))
    by_size = {int(c.body["tree_size"]): c.body for c in checkpoints}
    old, new = by_size.get(old_size), by_size.get(new_size)
    if old is None or new is None or old_size > new_size:
        return None
    leaves = [leaf_hash(bytes.fromhex(row.hash)) for row in _rows_until(store, new_size)]
    if len(leaves) != new_size or root_of(leaves).hex() != new["root"]:
        return {"error": "the stored rows do not match the newer signed checkpoint; run p402 ledger verify"}
    return {"old": {"tree_size": old_size, "root": old["root"], "event_id": old["event_id"]},
            "new": {"tree_size": new_size, "root": new["root"], "event_id": new["event_id"]},
            "proof": [h.hex() for h in consistency_proof(leaves, old_size)],
            "algorithm": "RFC 9162 section 2.1.4 consistency proof"}


def _rows_until(store: Any, size: int) -> Iterator[Any]:
    for row in store.chain():
        if row.seq > size:
            return
        yield row


def export_lines(config: Config, fmt: str, sealed: dict[str, Any] | None, total: int | None = None,
                 progress: Any = None, chain: Callable[[], Iterator[ChainRow]] | None = None) -> Iterator[bytes]:
    """An export's lines, read through a store connection of its own, so it can run in a
    worker thread without sharing the gateway's: a new SQLite connection, or `chain`
    (PostgreSQL's `chain()` opens a connection of its own)."""
    from p402.stores.sqlite import SqliteStore
    store = SqliteStore.from_url(config.store, checkpoints=False) if chain is None else None
    try:
        if store is not None:
            rows = store.chain()
        else:
            assert chain is not None
            rows = chain()
        if fmt == "jsonl":
            signer = Signer.load_or_create(config.signing_key) if Path(config.signing_key).exists() else None
            yield from jsonl_lines(rows, signer=signer, sealed=sealed, total=total, progress=progress)
        elif fmt == "csv":
            yield from csv_lines(rows, progress=progress, total=total)
        else:
            yield from focus_lines(rows, progress=progress, total=total)
    finally:
        if store is not None:
            store.db.close()
