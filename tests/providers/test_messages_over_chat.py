"""An Anthropic Messages client served by an OpenAI-compatible provider (translation both ways)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from p402.errors import UpstreamError
from p402.pipeline.tokens import count_text
from p402.providers.openai import OpenAIAdapter
from tests.providers.fakes.openai_fake import OpenAIFake
from tests.providers.helpers import close, drain, events, messages_call, run, take
from tests.providers.sdk_readers import anthropic_message, anthropic_stream

REQUEST = {
    "model": "gpt-4o-mini", "max_tokens": 200, "system": [{"type": "text", "text": "Be brief."}],
    "stop_sequences": ["END"], "metadata": {"user_id": "cust-1"},
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                                                  "data": "/9j/4AAQ"}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me check."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "lookup",
                                           "input": {"q": "cat"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a cat"},
                                     {"type": "text", "text": "So?"}]}],
    "tools": [{"name": "lookup", "description": "search", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "any"},
}


async def _with_fake(test):
    fake = OpenAIFake()
    await fake.start()
    adapter = OpenAIAdapter("openai", {"api_key": fake.api_key, "base_url": fake.base_url})
    try:
        return await test(fake, adapter)
    finally:
        await adapter.close()
        await fake.stop()


def test_messages_requests_are_translated_to_chat() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        assert "messages" in adapter.routes
        await adapter.send(messages_call(REQUEST))
        sent = fake.requests[0].json
        assert sent["max_completion_tokens"] == 200 and sent["stop"] == ["END"] and sent["user"] == "cust-1"
        msgs = sent["messages"]
        assert msgs[0] == {"role": "system", "content": "Be brief."}
        assert msgs[1]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}
        assert msgs[2]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"q":"cat"}'}
        assert msgs[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"}
        assert msgs[4] == {"role": "user", "content": "So?"}
        assert sent["tools"][0]["function"]["parameters"] == {"type": "object"} and sent["tool_choice"] == "required"

    run(_with_fake(test))


def test_answers_come_back_as_anthropic_messages() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.cached_tokens, fake.prompt_tokens = 10, 30
        fake.tool_calls = [{"id": "call_9", "name": "lookup", "arguments": '{"q": "dog"}'}]
        reply = await adapter.send(messages_call(REQUEST))
        message = anthropic_message(reply.body or b"")
        assert message.content[0].text == fake.reply_text
        assert message.content[1].input == {"q": "dog"} and message.stop_reason == "tool_use"
        assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (20, 10)
        assert message.usage.output_tokens == fake.completion_tokens() == reply.usage.output_tokens

    run(_with_fake(test))


def test_streams_come_back_as_anthropic_events_with_the_final_usage() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.tool_calls = [{"id": "call_9", "name": "lookup", "arguments": '{"q": "dog"}'}]
        reply = await adapter.send(messages_call(REQUEST, stream=True))
        raw = await drain(reply)
        assert fake.requests[0].json["stream_options"] == {"include_usage": True}
        message = anthropic_stream(raw)
        assert message.content[0].text == fake.reply_text
        assert message.content[1].name == "lookup" and message.content[1].input == {"q": "dog"}
        assert message.stop_reason == "tool_use"
        delta = [orjson.loads(e.data) for e in events(raw) if e.event == "message_delta"][0]
        assert delta["usage"]["output_tokens"] == fake.completion_tokens() == reply.usage.output_tokens
        assert delta["usage"]["input_tokens"] == fake.prompt_tokens

    run(_with_fake(test))


def test_upstream_4xx_comes_back_in_anthropic_error_format() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.faults.status, fake.faults.message = 400, "Invalid 'messages[1].content'"
        reply = await adapter.send(messages_call(REQUEST, stream=True))
        assert reply.status == 400
        assert orjson.loads(reply.body or b"") == {"type": "error", "error": {
            "type": "invalid_request_error", "message": "Invalid 'messages[1].content'"}}

    run(_with_fake(test))


def test_a_midway_failure_surfaces_from_the_translated_stream() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.faults.break_after = 3
        reply = await adapter.send(messages_call(REQUEST, stream=True, bound=77))
        with pytest.raises(UpstreamError):
            await drain(reply)
        assert reply.usage.input_tokens == 77
        assert reply.usage.output_tokens == count_text(fake.sent_text, "o200k_base") > 0

    run(_with_fake(test))


@pytest.mark.parametrize("read_first", [0, 3])
def test_closing_the_translated_stream_closes_the_upstream(read_first: int) -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.faults.endless, fake.faults.chunk_delay_s = True, 0.01
        reply = await adapter.send(messages_call(REQUEST, stream=True))
        await take(reply, read_first)
        assert reply.chunks is not None and fake.client_gone is not None
        await close(reply)
        await asyncio.wait_for(fake.client_gone.wait(), 5)

    run(_with_fake(test))
