"""The dashboard's live feed: one ledger poller per runtime, fanned out to every open stream.

The poller reads rows newer than the last one it saw from the store, so it sees
the rows every replica sharing the store writes, not only this process's. Each
row is encoded once as a Server-Sent Events frame and handed to every
subscriber's bounded buffer; after a poll that saw rows, one fresh tile frame
follows (so tiles refresh at most once per poll interval however busy the
gateway is).

Back-pressure goes one way only: a subscriber that reads slower than the ledger
grows loses its *oldest* buffered frames (and is told how many), it never slows
the poller, and the poller never slows the gateway: requests do not wait on the
dashboard at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Awaitable, Callable

import orjson

from p402.errors import StoreUnavailable
from p402.pipeline.ports import LedgerEvent, LedgerFilter
from p402.web.dashboard_view import event_view

__all__ = ["LedgerFeed", "Subscriber", "frame", "POLL_INTERVAL_S", "SUBSCRIBER_BUFFER", "PAGE_ROWS",
           "MAX_ROWS_PER_POLL", "BACKFILL_MAX_ROWS", "TILES_REFRESH_S"]

log = logging.getLogger("p402.dashboard")

POLL_INTERVAL_S = 0.25  # how often the poller looks for new ledger rows while anyone watches
SUBSCRIBER_BUFFER = 1000  # frames buffered per browser before its oldest are dropped
PAGE_ROWS = 500  # rows per store read
MAX_ROWS_PER_POLL = 5000  # rows per poll; a bigger burst is read over the next polls, nothing skipped
BACKFILL_MAX_ROWS = 1000  # rows replayed to a reconnecting browser (Last-Event-ID); older ones are skipped
TILES_REFRESH_S = 30.0  # tiles refresh without ledger rows too: burn rates drift, windows roll over


def frame(event: str, data: Any, ident: int | None = None) -> bytes:
    """One Server-Sent Events frame. JSON never contains a raw newline, so one `data:` line suffices."""
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


class Subscriber:
    """One open stream's buffer: ledger frames in order, plus the latest tile frame."""

    def __init__(self, buffer: int = SUBSCRIBER_BUFFER) -> None:
        self.frames: deque[bytes] = deque(maxlen=buffer)
        self.tiles: bytes | None = None  # only the newest matters; an older one is replaced, not queued
        self.status: bytes | None = None
        self.dropped = 0
        self.closed = False
        self.wake = asyncio.Event()

    def push(self, data: bytes) -> None:
        if len(self.frames) == self.frames.maxlen:
            self.dropped += 1  # the deque drops its oldest frame on append
        self.frames.append(data)
        self.wake.set()

    def set_tiles(self, data: bytes) -> None:
        self.tiles = data
        self.wake.set()

    def set_status(self, data: bytes) -> None:
        self.status = data
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    def prepend(self, frames: list[bytes]) -> None:
        """Put replayed frames before those already buffered, keeping the newest if over the bound."""
        merged = deque(frames, maxlen=self.frames.maxlen)
        merged.extend(self.frames)
        self.dropped += len(frames) + len(self.frames) - len(merged)
        self.frames = merged
        self.wake.set()

    def take(self) -> list[bytes]:
        """Everything ready to send, in order: a gap notice, ledger frames, status, then the tiles."""
        out: list[bytes] = []
        if self.dropped:
            out.append(frame("dropped", {"count": self.dropped}))
            self.dropped = 0
        out.extend(self.frames)
        self.frames.clear()
        for attr in ("status", "tiles"):
            if getattr(self, attr) is not None:
                out.append(getattr(self, attr))
                setattr(self, attr, None)
        self.wake.clear()
        return out


class LedgerFeed:
    """Polls the ledger while anyone watches and fans each new row out to every subscriber.

    `tiles` builds the tile snapshot (a coroutine); `on_policy_row` runs when a
    policy change is seen, so caps shown are the new ones even when another
    replica made the change.
    """

    def __init__(self, store: Any, tiles: Callable[[], Awaitable[dict[str, Any]]],
                 on_policy_row: Callable[[], Awaitable[Any]] | None = None, interval_s: float = POLL_INTERVAL_S,
                 buffer: int = SUBSCRIBER_BUFFER) -> None:
        self.store, self.tiles, self.on_policy_row = store, tiles, on_policy_row
        self.interval_s, self.buffer = interval_s, buffer
        self.last_seq = 0
        self.subscribers: set[Subscriber] = set()
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self._watched = asyncio.Event()
        self._lock = asyncio.Lock()
        self._store_ok = True

    async def subscribe(self, after_seq: int | None = None,
                        start: Callable[[asyncio.Task[None]], None] | None = None,
                        buffer: int | None = None) -> Subscriber:
        """Register a stream. `after_seq` (from Last-Event-ID) replays the rows it missed first.

        `start` receives the poller task the first time it is created, so the
        runtime can own (and cancel) it. `buffer` overrides the feed's per-subscriber bound.
        """
        sub = Subscriber(buffer or self.buffer)
        if self.closed:
            sub.close()
            return sub
        async with self._lock:
            if not self.subscribers:
                # Nobody watched: start from the head, not from rows written while the poller idled.
                self.last_seq = max(self.last_seq, await self._head_seq())
            self.subscribers.add(sub)
            self._watched.set()
            if self.task is None:
                self.task = asyncio.ensure_future(self._run())
                if start is not None:
                    start(self.task)
            registered_at = self.last_seq
        if after_seq is not None and after_seq < registered_at:
            # Rows after `registered_at` reach the buffer from the poller; replay the ones before it.
            first = max(after_seq, registered_at - BACKFILL_MAX_ROWS)
            rows = await self._read_after(first, registered_at)
            sub.prepend([frame("ledger", event_view(r), r.seq) for r in rows])
            if first > after_seq:
                sub.dropped += first - after_seq
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers:
            self._watched.clear()

    def close(self) -> None:
        """End every stream; later subscribers get a closed stream at once."""
        self.closed = True
        for sub in list(self.subscribers):
            sub.close()
        self.subscribers.clear()

    async def _head_seq(self) -> int:
        head = await self.store.events(LedgerFilter(limit=1))
        return head[0].seq if head else 0

    async def _read_after(self, after: int, upto: int | None = None, max_rows: int = MAX_ROWS_PER_POLL
                          ) -> list[LedgerEvent]:
        """Rows with seq in (after, upto], oldest first, at most `max_rows`.

        The ledger port reads newest-first below a seq, so each page asks for
        the rows below `cursor + PAGE_ROWS + 1`: exactly the next page, because
        the chain's seqs are dense (each row is its predecessor's seq + 1,
        appended under the store's write lock, so a visible row's predecessors
        are visible too).
        """
        out: list[LedgerEvent] = []
        cursor = after
        while len(out) < max_rows and (upto is None or cursor < upto):
            page = await self.store.events(LedgerFilter(limit=PAGE_ROWS, before_seq=cursor + PAGE_ROWS + 1))
            fresh = sorted((r for r in page if r.seq > cursor and (upto is None or r.seq <= upto)),
                           key=lambda r: r.seq)
            if not fresh:
                break
            out.extend(fresh)
            cursor = fresh[-1].seq
            if len(page) < PAGE_ROWS:
                break
        return out[:max_rows]

    async def _run(self) -> None:
        """The poller: sleeps while nobody watches, otherwise polls every `interval_s`."""
        loop = asyncio.get_running_loop()
        tiles_at = loop.time()
        try:
            while True:
                await self._watched.wait()
                await asyncio.sleep(self.interval_s)
                if not self.subscribers:
                    continue
                try:
                    changed = await self.poll_once()
                    if changed or loop.time() - tiles_at >= TILES_REFRESH_S:
                        tiles_at = loop.time()
                        self._fan_tiles(await self.tiles())
                    self._set_store_ok(True)
                except StoreUnavailable as exc:
                    log.warning("dashboard feed: store unavailable: %s", exc)
                    self._set_store_ok(False, str(exc))
                except Exception:  # the feed must outlive one bad poll; the gateway does not depend on it
                    log.exception("dashboard feed: poll failed")
        finally:
            self.close()

    async def poll_once(self) -> bool:
        """Fan out every row written since the last poll. True if there were any."""
        rows = await self._read_after(self.last_seq)
        # Re-check against last_seq: a subscriber arriving after an idle spell may have moved it forward.
        rows = [r for r in rows if r.seq > self.last_seq]
        policy_changed = False
        for r in rows:
            data = frame("ledger", event_view(r), r.seq)
            for sub in self.subscribers:
                sub.push(data)
            policy_changed = policy_changed or r.body.get("kind") == "policy"
        if rows:
            self.last_seq = rows[-1].seq
        if policy_changed and self.on_policy_row is not None:
            await self.on_policy_row()
        return bool(rows)

    def _fan_tiles(self, tiles: dict[str, Any]) -> None:
        data = frame("tiles", tiles)
        for sub in self.subscribers:
            sub.set_tiles(data)

    def _set_store_ok(self, ok: bool, error: str = "") -> None:
        if ok == self._store_ok:
            return
        self._store_ok = ok
        data = frame("status", {"store": "ok" if ok else "unavailable", "error": error or None})
        for sub in self.subscribers:
            sub.set_status(data)
