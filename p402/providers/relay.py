"""Relaying a stream: usage when the provider never reported it, and a close that always closes.

Two rules of the provider port live here. When a stream ends without the
provider's usage report (it failed mid-way, or the client went away), the
usage is what was produced so far: the streamed text counted with the o200k
tokenizer, and the pipeline's upper bound for the prompt. And when the gateway
calls `aclose()`, the upstream response is closed even if the stream was never
iterated (closing a never-started async generator does not run its `finally`).
"""

from __future__ import annotations

from typing import AsyncIterator, Callable

from p402.pipeline.ports import Usage, aclose
from p402.pipeline.tokens import count_text

__all__ = ["Tally", "RelayStream", "MappedStream", "FALLBACK_TOKENIZER"]

FALLBACK_TOKENIZER = "o200k_base"


class Tally:
    """Counts a stream's output as it passes, to stand in for a usage report that never came."""

    def __init__(self, usage: Usage, input_bound: int) -> None:
        self.usage = usage
        self.input_bound = input_bound
        self.input_known = False  # the provider reported the prompt's tokens
        self.output_known = False  # the provider reported the final output tokens
        self._parts: list[str] = []

    def text(self, piece: object) -> None:
        """Note streamed output (text, tool-call arguments, reasoning)."""
        if isinstance(piece, str) and piece:
            self._parts.append(piece)

    def has_output(self) -> bool:
        return bool(self._parts)

    def streamed_tokens(self) -> int:
        return count_text("".join(self._parts), FALLBACK_TOKENIZER)

    def finish(self) -> None:
        """Fill what the provider did not report. Idempotent."""
        if not self.input_known:
            self.usage.input_tokens = max(self.usage.input_tokens, self.input_bound)
            self.input_known = True
        if not self.output_known:
            self.usage.output_tokens = max(self.usage.output_tokens, self.streamed_tokens())
            self.output_known = True


class RelayStream:
    """An async iterator of SSE bytes whose `aclose()` always releases the upstream.

    `on_close` runs exactly once: when the stream is exhausted, fails, or is
    closed by the gateway, whichever comes first.
    """

    def __init__(self, gen: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        self._gen = gen
        self._on_close: Callable[[], None] | None = on_close

    def __aiter__(self) -> RelayStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._gen.__anext__()
        except BaseException:
            self._closed()
            raise

    async def aclose(self) -> None:
        try:
            await aclose(self._gen)
        finally:
            self._closed()

    def _closed(self) -> None:
        if self._on_close is not None:
            callback, self._on_close = self._on_close, None
            callback()


class MappedStream:
    """A stream translated from another one; `aclose()` always closes the inner stream too."""

    def __init__(self, inner: AsyncIterator[bytes],
                 translate: Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]) -> None:
        self._inner = inner
        self._gen = translate(inner)

    def __aiter__(self) -> MappedStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        try:
            await aclose(self._gen)
        finally:
            await aclose(self._inner)
