"""A decoder for AWS's binary event stream (`application/vnd.amazon.eventstream`).

Bedrock's ConverseStream answers in this framing, not SSE. Each message is::

    total length (u32 BE) | headers length (u32 BE) | prelude CRC32 (u32 BE, over the 8 bytes before it)
    headers | payload | message CRC32 (u32 BE, over everything before it)

A header is a 1-byte name length, the name, a 1-byte type and a typed value
(0 true, 1 false, 2 int8, 3 int16, 4 int32, 5 int64, 6 bytes, 7 string,
8 timestamp in ms, 9 UUID); bytes and strings carry a u16 length. Both CRCs are
checked: a corrupted frame must fail loudly, never be half-read as usage.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping

__all__ = ["EventMessage", "EventStreamDecoder", "EventStreamError", "event_messages", "MAX_MESSAGE_BYTES"]

MAX_MESSAGE_BYTES = 16 * 1024 * 1024 + 128 * 1024  # AWS's limits: 16 MiB of payload, 128 KiB of headers
_PRELUDE = 12
_MIN_MESSAGE = 16  # prelude + message CRC, no headers, no payload


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad length, bad CRC, bad header)."""


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One decoded message."""

    headers: Mapping[str, Any]
    payload: bytes

    @property
    def message_type(self) -> str:
        return str(self.headers.get(":message-type", "event"))

    @property
    def event_type(self) -> str:
        """The event name, or for exceptions and errors the exception type / error code."""
        for key in (":event-type", ":exception-type", ":error-code"):
            if key in self.headers:
                return str(self.headers[key])
        return ""


def _headers(raw: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i, end = 0, len(raw)
    try:
        while i < end:
            n = raw[i]
            name = raw[i + 1:i + 1 + n].decode("utf-8")
            i += 1 + n
            kind = raw[i]
            i += 1
            value: Any
            if kind in (0, 1):
                value = kind == 0
            elif kind in (2, 3, 4, 5, 8):
                fmt = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}[kind]
                size = struct.calcsize(fmt)
                (value,) = struct.unpack_from(fmt, raw, i)
                i += size
            elif kind in (6, 7):
                (size,) = struct.unpack_from(">H", raw, i)
                data = raw[i + 2:i + 2 + size]
                if len(data) != size:
                    raise EventStreamError("a header value runs past the headers")
                value = data.decode("utf-8") if kind == 7 else bytes(data)
                i += 2 + size
            elif kind == 9:
                value = uuid.UUID(bytes=bytes(raw[i:i + 16]))
                i += 16
            else:
                raise EventStreamError(f"unknown header type {kind}")
            out[name] = value
    except (IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, EventStreamError):
            raise
        raise EventStreamError(f"malformed headers: {exc}") from exc
    if i != end:
        raise EventStreamError("headers overrun their declared length")
    return out


class EventStreamDecoder:
    """Feed bytes in, get whole messages out."""

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_message_bytes
        self._error: EventStreamError | None = None

    def feed(self, chunk: bytes) -> list[EventMessage]:
        """Decode what `chunk` completes. Messages before a bad one are returned first; the
        error is raised by the next call (so no good message is lost with it)."""
        if self._error is not None:
            raise self._error
        self._buf += chunk
        out: list[EventMessage] = []
        try:
            self._decode(out)
        except EventStreamError as exc:
            if not out:
                raise
            self._error = exc
        return out

    def _decode(self, out: list[EventMessage]) -> None:
        while len(self._buf) >= _PRELUDE:
            total, headers_len, prelude_crc = struct.unpack_from(">III", self._buf, 0)
            if zlib.crc32(self._buf[:8]) != prelude_crc:
                raise EventStreamError("prelude CRC mismatch")
            if total < _MIN_MESSAGE or total > self._max or headers_len > total - _MIN_MESSAGE:
                raise EventStreamError(f"impossible lengths (total {total}, headers {headers_len})")
            if len(self._buf) < total:
                break
            frame = bytes(self._buf[:total])
            del self._buf[:total]
            (message_crc,) = struct.unpack_from(">I", frame, total - 4)
            if zlib.crc32(frame[:total - 4]) != message_crc:
                raise EventStreamError("message CRC mismatch")
            headers = _headers(frame[_PRELUDE:_PRELUDE + headers_len])
            out.append(EventMessage(headers, frame[_PRELUDE + headers_len:total - 4]))

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message (non-zero at the end of a body means it was cut)."""
        return len(self._buf)


async def event_messages(content: Any) -> AsyncIterator[EventMessage]:
    """The messages of an aiohttp response body (`response.content`); a cut-off last message raises."""
    decoder = EventStreamDecoder()
    async for chunk in content.iter_any():
        for message in decoder.feed(chunk):
            yield message
    decoder.feed(b"")  # raises an error found after the last good message
    if decoder.pending:
        raise EventStreamError(f"the stream ended inside a message ({decoder.pending} bytes left)")
