"""What every HTTP provider adapter shares: dispatch by route, posting, and the stream pump.

An adapter subclasses `HttpAdapter` and implements `_send(call)` for the routes
its provider speaks (`native_routes`). A `/v1/messages` client is served by any
adapter that speaks chat, through `messages_over_chat`.

Streams follow one shape. The first event is read *before* the `Reply` is
returned, so a provider that fails before producing anything raises a
retryable `UpstreamError` and the pipeline can fall back to another model.
After that, `pump` steps event by event and relays one chunk per network read
(the frames of the events that read completed); a failure mid-stream relays
the frames before the bad event and nothing more, fills the usage with what was
produced, and raises a non-retryable `UpstreamError` from the iterator.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable, Mapping

import aiohttp
import orjson
from yarl import URL

from p402.errors import UpstreamError
from p402.pipeline.ports import Call, Reply, aclose
from p402.providers.chat_format import RequestUnfit
from p402.providers.error_bodies import client_error, relay_error
from p402.providers.http import TRANSPORT_ERRORS, HttpSettings, UpstreamClient, read_body, read_error_body
from p402.providers.relay import RelayStream, Tally
from p402.providers.sse import SSEError, SSEEvent, sse_event_batches

__all__ = ["HttpAdapter", "StreamFault", "Step", "parse_json_body", "parse_event_json"]

MAX_PREAMBLE_EVENTS = 16  # events read before the Reply is returned, when none carries output yet

# A stream step turns one upstream event into frames for the client, and says
# whether the stream is complete. It is called with None at the end of the body:
# most providers send an end marker and raise StreamFault there; Gemini does not.
# Events are SSE events for most providers, event-stream messages for Bedrock.
Step = Callable[[Any], tuple[list[bytes], bool]]


class StreamFault(Exception):
    """The provider reported an error inside the stream, or sent something unreadable."""


class HttpAdapter:
    """Base of the HTTP adapters (see the module docstring)."""

    default_base_url = ""
    native_routes: frozenset[str] = frozenset()
    upstream_format = "openai"  # the provider's error body shape (see error_bodies)
    output_bound_field = "max_tokens"  # where a translated /v1/messages request puts its max_tokens

    def __init__(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        settings = dict(settings or {})
        self.name = name
        self.settings = settings
        self.http = UpstreamClient(name, HttpSettings.parse(name, settings, self.default_base_url))
        self.base_url = self.http.settings.base_url
        chat = "chat" in self.native_routes
        self.routes = self.native_routes | (frozenset({"messages"}) if chat else frozenset())

    async def send(self, call: Call) -> Reply:
        """Serve `call` in its client's format (see `p402.pipeline.ports.Provider`)."""
        if call.route not in self.routes:
            message = f"provider {self.name} cannot serve the {call.route} API"
            return Reply(400, body=client_error(call.route, 400, message))
        try:
            if call.route == "messages" and "messages" not in self.native_routes:
                from p402.providers.messages_over_chat import send_messages_over_chat

                return await send_messages_over_chat(self._send, call, self.output_bound_field)
            return await self._send(call)
        except RequestUnfit as exc:  # raised before anything was sent: nothing to pay for
            return Reply(400, body=client_error(call.route, 400, f"{exc} (provider {self.name})"))

    async def _send(self, call: Call) -> Reply:
        raise NotImplementedError

    async def close(self) -> None:
        await self.http.close()

    # -- posting -------------------------------------------------------------------------------------------

    async def post(self, call: Call, url: str | URL, payload: bytes,
                   headers: Mapping[str, str]) -> aiohttp.ClientResponse | Reply:
        """POST; a 2xx response to read, or the relayed 4xx as a finished `Reply`."""
        resp = await self.http.post(url, payload, headers, call.timeout_s)
        if resp.status < 400:
            return resp
        raw = await read_error_body(resp)
        body = relay_error(call.route, resp.status, raw, self.upstream_format, resp.headers)
        return Reply(resp.status, body=body)

    async def read_json(self, resp: aiohttp.ClientResponse) -> tuple[bytes, dict[str, Any]]:
        """A whole JSON answer; unreadable ones are retryable failures (nothing relayed yet)."""
        raw = await read_body(resp, self.name)
        return raw, parse_json_body(raw, self.name)

    # -- streaming ----------------------------------------------------------------------------------------

    async def open_stream(self, resp: aiohttp.ClientResponse, tally: Tally, step: Step,
                          events: AsyncIterator[Any] | None = None,
                          batches: AsyncIterator[list[Any]] | None = None) -> RelayStream:
        """Read up to the first output (failures there are retryable), then hand back the relay.

        Events are stepped one by one but relayed per network read: the frames of every event
        that arrived in one read go to the client as one chunk. One write per read instead of
        one per event is most of what relaying a stream costs (measured on the benchmark's
        20-event answers: 639 -> 842 streams/s at 64 connections), and the bytes are the same.
        `events` (one at a time) or `batches` (one list per read) replace the SSE decoder.
        """
        if batches is None:
            batches = sse_event_batches(resp.content) if events is None else _singles(events)
        frames: list[bytes] = []
        rest: list[Any] = []
        done = False
        try:
            # Hold back the opening events until the first output (or the end): an error the
            # provider sends right after its preamble is then still a retryable failure.
            seen = 0
            while seen < MAX_PREAMBLE_EVENTS and not done and not tally.has_output():
                batch = await anext(batches, None)
                rest = [None] if batch is None else batch
                while rest and seen < MAX_PREAMBLE_EVENTS:
                    event, rest = rest[0], rest[1:]
                    seen += 1
                    more, done = step(event)
                    frames += more
                    if done or tally.has_output():
                        break
        except BaseException as exc:
            resp.close()
            await _aclose(batches, events)
            # The provider accepted the call (a 200 and a stream): what it bills is not known.
            if isinstance(exc, asyncio.TimeoutError):
                raise UpstreamError(f"{self.name}: no stream event within the timeout", 504, retryable=True,
                                    maybe_billed=True) from exc
            if isinstance(exc, (*TRANSPORT_ERRORS, SSEError, StreamFault)):
                raise UpstreamError(f"{self.name}: stream failed before its first output: {exc}", 502,
                                    retryable=True, maybe_billed=True) from exc
            raise
        state = {"done": done}

        def on_close() -> None:
            # A finished stream goes back to the pool; an unfinished one is closed so the
            # provider sees the connection drop and stops generating.
            if state["done"]:
                resp.release()
            else:
                resp.close()
            tally.finish()

        return RelayStream(self._pump(frames, done, rest, batches, events, step, tally, state), on_close)

    async def _pump(self, frames: list[bytes], done: bool, rest: list[Any], batches: AsyncIterator[list[Any]],
                    events: AsyncIterator[Any] | None, step: Step, tally: Tally,
                    state: dict[str, bool]) -> AsyncIterator[bytes]:
        try:
            while True:
                if frames:
                    yield b"".join(frames)
                    frames = []
                if done:
                    state["done"] = True
                    return
                batch = rest or await anext(batches, None)  # type: ignore[arg-type]  # None marks the end
                rest = []
                try:
                    for event in [None] if batch is None else batch:
                        more, done = step(event)
                        frames += more
                        if done:
                            break
                except BaseException:
                    if frames:  # what came before the failing event is relayed, as it would have been alone
                        yield b"".join(frames)
                    raise
        except asyncio.TimeoutError as exc:
            failure = UpstreamError(f"{self.name}: stream stalled past the timeout", 504)
            cause: BaseException = exc
        except (*TRANSPORT_ERRORS, SSEError, StreamFault) as exc:
            failure = UpstreamError(f"{self.name}: stream broke mid-way: {exc}", 502)
            cause = exc
        finally:
            await _aclose(batches, events)
        tally.finish()
        raise failure from cause


def parse_json_body(raw: bytes, provider: str) -> dict[str, Any]:
    """A whole answer as a JSON object; anything else is a retryable failure (nothing relayed yet)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"{provider}: answer is not JSON", 502, retryable=True, maybe_billed=True) from exc
    if not isinstance(doc, dict):
        raise UpstreamError(f"{provider}: answer is not a JSON object", 502, retryable=True, maybe_billed=True)
    return doc


def parse_event_json(event: SSEEvent | None) -> dict[str, Any]:
    """An event's data as a JSON object; a StreamFault if unreadable or if the body ended (None)."""
    if event is None:
        raise StreamFault("the stream ended before its end marker")
    try:
        doc = orjson.loads(event.data)
    except orjson.JSONDecodeError as exc:
        raise StreamFault(f"unreadable event data {event.data[:80]!r}") from exc
    if not isinstance(doc, dict):
        raise StreamFault(f"event data is not an object: {event.data[:80]!r}")
    return doc


async def _singles(events: AsyncIterator[Any]) -> AsyncIterator[list[Any]]:
    """Batches of one, for adapters that bring their own event iterator (Bedrock's event-stream)."""
    async for event in events:
        yield [event]


async def _aclose(*iterators: AsyncIterator[Any] | None) -> None:
    for it in iterators:
        try:
            await aclose(it)
        except Exception:  # closing a broken upstream iterator must not mask the real failure
            pass
