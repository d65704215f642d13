"""Server-Sent Events: an incremental decoder, and the two framings we write.

The decoder follows the WHATWG parsing rules (lines end in CRLF, LF or CR; a
blank line dispatches; `:` starts a comment; one optional space after the
colon is dropped) because providers differ: Gemini ends events with CRLF,
OpenRouter sends `: OPENROUTER PROCESSING` comments, Anthropic names events.
aiohttp's own `readline` caps a line at 64 KiB, too small for a large tool-call
argument or an inline image, so we split the byte stream ourselves and bound an
event at `MAX_EVENT_BYTES` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator

import orjson

__all__ = ["SSEEvent", "SSEDecoder", "SSEError", "SSEFramer", "sse_events", "sse_event_batches", "sse_frame_batches",
           "data_frame", "event_frame", "reframe", "DONE_FRAME", "MAX_EVENT_BYTES"]

MAX_EVENT_BYTES = 16 * 1024 * 1024  # one event; a provider sending more is broken or hostile
DONE_FRAME = b"data: [DONE]\n\n"


class SSEError(ValueError):
    """The byte stream is not a valid event stream (or an event is too large)."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its name ("" when unnamed) and its joined data lines."""

    event: str
    data: str


class SSEDecoder:
    """Feed bytes in, get whole events out."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._max = max_event_bytes
        self._error: SSEError | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode what `chunk` completes; keeps a partial line for the next call. Events before
        a bad one are returned first; the error is raised by the next call."""
        if self._error is not None:
            raise self._error
        self._buf += chunk
        out: list[SSEEvent] = []
        try:
            self._decode(out)
        except SSEError as exc:
            if not out:
                raise
            self._error = exc
        return out

    def _decode(self, out: list[SSEEvent]) -> None:
        while True:
            cut, skip = _line_end(self._buf)
            if cut < 0:
                break
            # A lone CR at the very end may be the first half of CRLF: wait for more.
            if skip == 1 and self._buf[cut:cut + 1] == b"\r" and cut + 1 == len(self._buf):
                break
            line, self._buf = self._buf[:cut], self._buf[cut + skip:]
            event = self._line(line)
            if event is not None:
                out.append(event)
        if len(self._buf) + self._size > self._max:
            raise SSEError(f"an event is larger than {self._max} bytes")

    def _line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            if not self._data and not self._event:
                return None
            event = SSEEvent(self._event, "\n".join(self._data))
            self._event, self._data, self._size = "", [], 0
            return event
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SSEError("an event is not UTF-8") from exc
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._size += len(raw)
        elif name == "event":
            self._event = value
        return None  # id, retry and unknown fields do not matter to us


class SSEFramer:
    """Like `SSEDecoder`, but a plain one-line `data: ...` event comes out as its exact bytes.

    Relaying such an event needs no decoding and no re-framing: its bytes are what
    `reframe` would write (`data: <payload>` LF LF). Anything else (named events,
    comments, multi-line data, a bare `data:`) is decoded by an `SSEDecoder` and
    comes out as an `SSEEvent`, as before. A stream that uses CR line endings
    anywhere is handed to the decoder whole from then on. Measured on 20-event
    answers: 0.6 us per event instead of the decoder's 3 us.
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buf = b""
        self._decoder = SSEDecoder(max_event_bytes)
        self._plain = False  # True once a CR was seen: the general decoder takes over
        self._max = max_event_bytes
        self._error: SSEError | None = None

    def feed(self, chunk: bytes) -> list[bytes | SSEEvent]:
        """Frames and events that `chunk` completes; the same error rules as `SSEDecoder.feed`."""
        if self._error is not None:
            raise self._error
        if self._plain:
            return list(self._decoder.feed(chunk))
        buf = self._buf + chunk
        if b"\r" in chunk:
            self._plain, self._buf = True, b""
            return list(self._decoder.feed(buf))
        out: list[bytes | SSEEvent] = []
        start = 0
        try:
            while (end := buf.find(b"\n\n", start)) >= 0:
                block, frame_start, start = buf[start:end], start, end + 2
                if block.startswith(b"data: ") and b"\n" not in block:
                    if not block.isascii():
                        _check_utf8(block)
                    out.append(buf[frame_start:start])
                elif block:
                    out.extend(self._decoder.feed(block + b"\n\n"))
            self._buf = buf[start:]
            if len(self._buf) > self._max:
                raise SSEError(f"an event is larger than {self._max} bytes")
        except SSEError as exc:
            if not out:
                raise
            self._error = exc
        return out


def _check_utf8(raw: bytes) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SSEError("an event is not UTF-8") from exc


def _line_end(buf: bytes) -> tuple[int, int]:
    """Index of the first line terminator in `buf` and its length (-1 if none)."""
    lf, cr = buf.find(b"\n"), buf.find(b"\r")
    if cr < 0:
        return lf, 1
    if lf < 0 or cr < lf:
        return (cr, 2) if buf[cr + 1:cr + 2] == b"\n" else (cr, 1)
    return lf, 1


async def sse_events(content: Any, max_event_bytes: int = MAX_EVENT_BYTES) -> AsyncIterator[SSEEvent]:
    """The events of an aiohttp response body (`response.content`), as they arrive."""
    decoder = SSEDecoder(max_event_bytes)
    async for chunk in content.iter_any():
        for event in decoder.feed(chunk):
            yield event
    decoder.feed(b"")  # raises an error found after the last good event


async def sse_event_batches(content: Any, max_event_bytes: int = MAX_EVENT_BYTES) -> AsyncIterator[list[SSEEvent]]:
    """The events of an aiohttp response body, one list per network read (never an empty list).

    Relaying a whole read at once is what lets the gateway write one chunk to its client
    per read instead of one per event (see `HttpAdapter.open_stream`).
    """
    decoder = SSEDecoder(max_event_bytes)
    async for chunk in content.iter_any():
        events = decoder.feed(chunk)
        if events:
            yield events
    decoder.feed(b"")  # raises an error found after the last good event


async def sse_frame_batches(content: Any, max_event_bytes: int = MAX_EVENT_BYTES) -> \
        AsyncIterator[list[bytes | SSEEvent]]:
    """`sse_event_batches` with plain data events as their exact bytes (see `SSEFramer`)."""
    framer = SSEFramer(max_event_bytes)
    async for chunk in content.iter_any():
        items = framer.feed(chunk)
        if items:
            yield items
    framer.feed(b"")


def data_frame(obj: Any) -> bytes:
    """An unnamed event (OpenAI and Gemini framing)."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def event_frame(name: str, obj: Any) -> bytes:
    """A named event (Anthropic framing)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def reframe(event: SSEEvent) -> bytes:
    """An event written back out as received (its name, then one `data:` line per data line)."""
    head = b"event: " + event.event.encode() + b"\n" if event.event else b""
    lines = b"".join(b"data: " + line.encode() + b"\n" for line in event.data.split("\n"))
    return head + lines + b"\n"
