"""Encode AWS event-stream messages (what Bedrock's ConverseStream sends), for the Bedrock fake.

Checked against botocore's own decoder in the tests, so the fake's frames are the
real framing and not just what our decoder expects.
"""

from __future__ import annotations

import struct
import zlib
from typing import Mapping

__all__ = ["encode_message", "event", "exception"]


def _header(name: str, value: str | bytes | bool | int) -> bytes:
    raw = name.encode()
    head = bytes([len(raw)]) + raw
    if isinstance(value, bool):
        return head + bytes([0 if value else 1])
    if isinstance(value, int):
        return head + bytes([4]) + struct.pack(">i", value)
    if isinstance(value, bytes):
        return head + bytes([6]) + struct.pack(">H", len(value)) + value
    data = value.encode()
    return head + bytes([7]) + struct.pack(">H", len(data)) + data


def encode_message(headers: Mapping[str, str | bytes | bool | int], payload: bytes) -> bytes:
    encoded = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(kind: str, payload: bytes) -> bytes:
    return encode_message({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                          payload)


def exception(kind: str, message: str) -> bytes:
    return encode_message({":exception-type": kind, ":content-type": "application/json",
                           ":message-type": "exception"}, b'{"message":"' + message.encode() + b'"}')
