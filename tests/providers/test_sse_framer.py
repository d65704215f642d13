"""The framer relays plain data events as their bytes and everything else as the decoder did.

What a client receives must not depend on the fast path: for every stream and
every way the network cuts it, relaying the framer's output (bytes as they are,
events re-framed) gives exactly what decoding and re-framing every event gave.
"""

from __future__ import annotations

import pytest

from p402.providers.sse import SSEDecoder, SSEError, SSEEvent, SSEFramer, reframe

STREAMS = [
    # OpenAI: one-line data events, a final [DONE]
    b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
    b'data: {"choices":[{"delta":{"content":"Hello \xc3\xa9 \xf0\x9f\xa4\x96"}}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\ndata: [DONE]\n\n',
    # OpenRouter keep-alive comments, named events, multi-line data, a bare `data:` and extra blank lines
    b': OPENROUTER PROCESSING\n\ndata: {"a":1}\n\n\n\nevent: ping\ndata: {}\n\ndata: {"x":\ndata: 2}\n\n'
    b'data:{"no_space":true}\n\ndata:  {"two_spaces":true}\n\nid: 7\ndata: {"b":2}\n\ndata: [DONE]\n\n',
    # CRLF line endings part-way through: the decoder takes over
    b'data: {"a":1}\n\ndata: {"b":2}\r\n\r\ndata: {"c":3}\n\ndata: [DONE]\r\n\r\n',
]


def _relayed(items: list[bytes | SSEEvent]) -> bytes:
    return b"".join(i if isinstance(i, bytes) else reframe(i) for i in items)


def _reference(raw: bytes) -> bytes:
    return b"".join(reframe(e) for e in SSEDecoder().feed(raw))


@pytest.mark.parametrize("raw", STREAMS)
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_the_relayed_bytes_are_what_decoding_and_reframing_gave_whatever_the_cuts(raw: bytes, size: int) -> None:
    framer = SSEFramer()
    items: list[bytes | SSEEvent] = []
    for i in range(0, len(raw), size):
        items += framer.feed(raw[i:i + size])
    items += framer.feed(b"")
    assert _relayed(items) == _reference(raw)


def test_plain_data_events_come_out_as_their_own_bytes() -> None:
    raw = b'data: {"a":1}\n\n: comment\n\ndata: [DONE]\n\n'
    assert SSEFramer().feed(raw) == [b'data: {"a":1}\n\n', b"data: [DONE]\n\n"]


def test_a_plain_event_that_is_not_utf8_is_refused_like_the_decoder_refuses_it() -> None:
    framer = SSEFramer()
    assert framer.feed(b'data: {"ok":1}\n\ndata: {"bad":"\xff"}\n\n') == [b'data: {"ok":1}\n\n']
    with pytest.raises(SSEError, match="not UTF-8"):
        framer.feed(b"")


def test_an_unterminated_event_larger_than_the_bound_is_refused() -> None:
    with pytest.raises(SSEError, match="larger than 64 bytes"):
        SSEFramer(max_event_bytes=64).feed(b"data: " + b"x" * 100)
