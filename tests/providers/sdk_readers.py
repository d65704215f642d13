"""Read our translated answers with the official SDKs' own models and stream accumulators.

If a translation drifts from the wire format, the SDK's validation or its
accumulator fails here, as it would in a user's program.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import TypeAdapter

from tests.providers.helpers import events


def openai_completion(body: bytes) -> Any:
    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate(orjson.loads(body))


def openai_stream(raw: bytes) -> Any:
    """The final ChatCompletion the openai SDK assembles from our chunk stream."""
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    state: Any = ChatCompletionStreamState()
    found_done = False
    for e in events(raw):
        if e.data == "[DONE]":
            found_done = True
            continue
        state.handle_chunk(ChatCompletionChunk.model_validate(orjson.loads(e.data)))
    assert found_done, "an OpenAI stream ends with data: [DONE]"
    return state.get_final_completion()


def anthropic_message(body: bytes) -> Any:
    from anthropic.types import Message

    return Message.model_validate(orjson.loads(body))


def anthropic_stream(raw: bytes) -> Any:
    """The final Message the anthropic SDK assembles from our event stream."""
    from anthropic.lib.streaming._messages import accumulate_event
    from anthropic.types import RawMessageStreamEvent

    adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    names = []
    for e in events(raw):
        doc = orjson.loads(e.data)
        assert doc["type"] == e.event, "every Anthropic event is named after its type"
        names.append(e.event)
        if e.event == "ping":
            continue
        snapshot = accumulate_event(event=adapter.validate_python(doc), current_snapshot=snapshot,
                                    json_bufs=json_bufs)
    assert names[0] == "message_start" and names[-1] == "message_stop"
    return snapshot
