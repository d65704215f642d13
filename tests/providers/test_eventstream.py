"""The AWS event-stream decoder: framing, both CRCs, header types, cut-off streams.

The frames are made by the Bedrock fake's encoder, which is itself checked against
botocore's decoder (an independent implementation of the same format).
"""

from __future__ import annotations

import struct
import uuid
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer

from p402.providers.eventstream import EventStreamDecoder, EventStreamError
from tests.providers.fakes.eventstream_encode import encode_message, event, exception


def test_the_fakes_frames_are_what_botocore_decodes() -> None:
    frame = encode_message({":event-type": "contentBlockDelta", ":message-type": "event", "n": 7, "flag": True,
                            "raw": b"\x00\x01"}, b'{"delta":{"text":"hi"}}')
    buf = EventStreamBuffer()
    buf.add_data(frame)
    (message,) = list(buf)
    assert message.headers == {":event-type": "contentBlockDelta", ":message-type": "event", "n": 7,
                               "flag": True, "raw": b"\x00\x01"}
    assert message.payload == b'{"delta":{"text":"hi"}}'


def test_messages_decode_across_arbitrary_chunk_boundaries() -> None:
    stream = event("messageStart", b'{"role":"assistant"}') + event("contentBlockDelta", b'{"x":1}') + \
        exception("throttlingException", "slow down")
    decoder = EventStreamDecoder()
    got = []
    for i in range(0, len(stream), 5):  # 5-byte pieces split every field somewhere
        got += decoder.feed(stream[i:i + 5])
    assert [m.event_type for m in got] == ["messageStart", "contentBlockDelta", "throttlingException"]
    assert [m.message_type for m in got] == ["event", "event", "exception"]
    assert got[1].payload == b'{"x":1}' and decoder.pending == 0


def test_every_header_type_decodes() -> None:
    ident = uuid.uuid4()
    headers = (b"\x01a\x00" + b"\x01b\x01" + b"\x01c\x02\xff" + b"\x01d\x03\x01\x00" + b"\x01e\x05" +
               struct.pack(">q", -5) + b"\x01f\x08" + struct.pack(">q", 1_700_000_000_000) + b"\x01g\x09" +
               ident.bytes)
    total = 12 + len(headers) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers
    frame = body + struct.pack(">I", zlib.crc32(body))
    (message,) = EventStreamDecoder().feed(frame)
    assert message.headers == {"a": True, "b": False, "c": -1, "d": 256, "e": -5, "f": 1_700_000_000_000, "g": ident}
    assert message.payload == b""


def test_a_corrupted_payload_fails_the_message_crc() -> None:
    frame = bytearray(event("contentBlockDelta", b'{"delta":{"text":"hello"}}'))
    frame[-8] ^= 0x01
    with pytest.raises(EventStreamError, match="message CRC"):
        EventStreamDecoder().feed(bytes(frame))


def test_a_corrupted_length_fails_the_prelude_crc() -> None:
    frame = bytearray(event("contentBlockDelta", b"{}"))
    frame[3] ^= 0x01
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(bytes(frame))


def test_impossible_lengths_are_refused_before_buffering() -> None:
    prelude = struct.pack(">II", 2**31, 0)
    with pytest.raises(EventStreamError, match="impossible"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


def test_a_cut_off_message_stays_pending() -> None:
    frame = event("metadata", b'{"usage":{}}')
    decoder = EventStreamDecoder()
    assert decoder.feed(frame[:-3]) == [] and decoder.pending == len(frame) - 3
