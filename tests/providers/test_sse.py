"""The SSE decoder: line endings, comments, multi-line data, chunk boundaries, bounds."""

from __future__ import annotations

import pytest

from p402.providers.sse import SSEDecoder, SSEError, SSEEvent, reframe

STREAM = (b": OPENROUTER PROCESSING\n\n"
          b"event: message_start\ndata: {\"a\": 1}\n\n"
          b"data: line one\r\ndata: line two\r\n\r\n"
          b"data:no-space\r\rdata: [DONE]\n\n")
EXPECTED = [SSEEvent("message_start", '{"a": 1}'), SSEEvent("", "line one\nline two"), SSEEvent("", "no-space"),
            SSEEvent("", "[DONE]")]


def test_events_decode_with_every_line_ending_and_comments_skipped() -> None:
    assert SSEDecoder().feed(STREAM) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_events_decode_the_same_whatever_the_chunk_boundaries(size: int) -> None:
    decoder = SSEDecoder()
    got: list[SSEEvent] = []
    for i in range(0, len(STREAM), size):
        got += decoder.feed(STREAM[i:i + size])
    assert got == EXPECTED


def test_an_event_larger_than_the_bound_is_refused() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    with pytest.raises(SSEError, match="larger than 64 bytes"):
        decoder.feed(b"data: " + b"x" * 100)


def test_events_before_a_bad_one_are_kept_and_the_error_comes_next() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: ok\n\ndata: \xff\xfe\n\n") == [SSEEvent("", "ok")]
    with pytest.raises(SSEError):
        decoder.feed(b"")


def test_reframing_writes_an_event_back_as_received() -> None:
    assert reframe(SSEEvent("message_stop", '{"type":"message_stop"}')) == \
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    assert reframe(SSEEvent("", "a\nb")) == b"data: a\ndata: b\n\n"
