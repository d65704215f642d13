"""The local spool: what the gateway could not write while the store was down.

Fail closed means the request is refused, but the refusal (and any settlement
that could not be written) must still reach the ledger. Entries are appended to
a JSONL file (bounded) and replayed, in order, when the store answers again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

from p402.errors import StoreUnavailable
from p402.pipeline.gateway import settle_hold

__all__ = ["FileSpool", "MAX_SPOOL_BYTES", "MAX_REFUSAL_BYTES"]

MAX_SPOOL_BYTES = 256 * 1024 * 1024
# Refusals stop here; the rest is kept for settlements, which carry what calls really cost.
MAX_REFUSAL_BYTES = MAX_SPOOL_BYTES * 3 // 4
log = logging.getLogger("p402.spool")


class FileSpool:
    """An append-only JSONL spool with replay."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def add(self, op: str, payload: dict[str, Any]) -> None:
        try:
            limit = MAX_SPOOL_BYTES if op == "settle" else MAX_REFUSAL_BYTES
            if self.path.exists() and self.path.stat().st_size > limit:
                log.error("spool %s is full for %s entries (%d bytes); dropping one", self.path, op, limit)
                return
            with open(self.path, "ab") as f:
                f.write(orjson.dumps({"op": op, "payload": payload}) + b"\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            log.error("cannot write spool %s: %s", self.path, exc)

    def pending(self) -> int:
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as f:
            return sum(1 for line in f if line.strip())

    async def replay(self, store: Any) -> int:
        """Write spooled entries to the store; keeps what still cannot be written."""
        if not self.path.exists():
            return 0
        lines = [line for line in self.path.read_bytes().splitlines() if line.strip()]
        done = 0
        for line in lines:
            item = orjson.loads(line)
            try:
                if item["op"] == "settle":
                    p = item["payload"]
                    await settle_hold(store, p["hold_id"], p["cost_nanos"], p["entry"])
                else:
                    await store.record(item["payload"])
            except StoreUnavailable:
                break
            done += 1
        rest = lines[done:]
        if rest:
            self.path.write_bytes(b"\n".join(rest) + b"\n")
        else:
            self.path.unlink(missing_ok=True)
        return done
