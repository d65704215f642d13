"""The Anthropic adapter against a fake Anthropic server: native Messages and translated chat."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from p402.core.money import format_usd
from p402.errors import UpstreamError
from p402.pipeline.tokens import count_text
from p402.providers.anthropic import AnthropicAdapter
from p402.providers.prices import catalog_price
from tests.providers.fakes.anthropic_fake import AnthropicFake
from tests.providers.helpers import chat_call, close, drain, events, messages_call, run, take
from tests.providers.sdk_readers import anthropic_message, anthropic_stream, openai_completion, openai_stream

MODEL = "claude-sonnet-4-5-20250929"
NATIVE = {"model": MODEL, "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
          "messages": [{"role": "user", "content": "Why budgets?"}], "max_tokens": 512,
          "thinking": {"type": "enabled", "budget_tokens": 256}}


async def _with_fake(test, **settings):
    fake = AnthropicFake()
    await fake.start()
    adapter = AnthropicAdapter("anthropic", {"api_key": fake.api_key, "base_url": fake.base_url, **settings})
    try:
        return await test(fake, adapter)
    finally:
        await adapter.close()
        await fake.stop()


def test_native_messages_relay_the_body_untouched_and_read_cache_usage() -> None:
    async def test(fake: AnthropicFake, adapter: AnthropicAdapter) -> None:
        fake.cache_read_tokens, fake.cache_write_tokens, fake.thinking_text = 3000, 200, "Let me think"
        reply = await adapter.send(messages_call(NATIVE))
        sent = fake.requests[0]
        assert sent.json == {**NATIVE}  # nothing added, nothing lost (cache_control, thinking...)
        assert sent.headers["x-api-key"] == fake.api_key and sent.headers["anthropic-version"] == "2023-06-01"
        message = anthropic_message(reply.body or b"")
        assert message.content[-1].text == fake.reply_text
        u = reply.usage
        assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens) == (25, 3000, 200)
        assert u.output_tokens == fake.output_tokens() and u.reported  # thinking is billed output

    run(_with_fake(test))


def test_configured_betas_are_sent_as_the_anthropic_beta_header() -> None:
    async def test(fake: AnthropicFake, adapter: AnthropicAdapter) -> None:
        await adapter.send(messages_call(NATIVE))
        assert fake.requests[0].headers["anthropic-beta"] == "extended-cache-ttl-2025-04-11,context-1m-2025-08-07"

    run(_with_fake(test, anthropic_beta=["extended-cache-ttl-2025-04-11", "context-1m-2025-08-07"]))


def test_native_stream_is_relayed_event_for_event() -> None:
    async def test(fake: AnthropicFake, adapter: AnthropicAdapter) -> None:
        fake.tool_uses = [{"id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]
        reply = await adapter.send(messages_call(NATIVE, stream=True))
        raw = await drain(reply)
        names = [e.event for e in events(raw)]
        assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
        message = anthropic_stream(raw)
        assert message.content[0].text == fake.reply_text
        assert message.content[1].input == {"city": "Paris"} and message.stop_reason == "tool_use"
        assert reply.usage.reported
        assert (reply.usage.input_tokens, reply.usage.output_tokens) == (25, fake.output_tokens())

    run(_with_fake(test))


CHAT = {"model": MODEL, "max_completion_tokens": 300, "stop": "END", "user": "cust-9",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "cat"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            {"role": "user", "content": "And now?"}],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "search",
                                                    "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": "required", "parallel_tool_calls": False}


def test_chat_requests_are_translated_into_messages() -> None:
    async def test(fake: AnthropicFake, adapter: AnthropicAdapter) -> None:
        await adapter.send(chat_call(CHAT))
        sent = fake.requests[0].json
        assert sent["system"] == "Be brief." and sent["max_tokens"] == 300
        assert sent["stop_sequences"] == ["END"] and sent["metadata"] == {"user_id": "cust-9"}
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]  # tool result + next turn merged
        first = sent["messages"][0]["content"]
        assert first[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                        "data": "iVBORw0K"}}
        assert sent["messages"][1]["content"] == [{"type": "tool_use", "id": "call_1", "name": "lookup",
                                                   "input": {"q": "cat"}}]
        assert sent["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": "a cat"},
                                                  {"type": "text", "text": "And now?"}]
        assert sent["tools"] == [{"name": "lookup", "description": "search",
                                  "input_schema": {"type": "object", "properties": {}}}]
        assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}

    run(_with_fake(test))


def test_chat_answers_come_back_as_chat_completions() -> None:
    async def test(fake: AnthropicFake, adapter: AnthropicAdapter) -> None:
        fake.tool_uses = [{"id": "toolu_1", "name": "lookup", "input": {"q": "dog"}}]
        fake.cache_read_tokens = 100
        reply = await adapter.send(chat_call(CHAT))
        completion = openai_completion(reply.body or b"")
        choice = completion.choices[0]
        assert choice.message.content == fake.reply_text and choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls[0].function.name == "lookup"
        assert orjson.loads(choice.message.tool_calls[0].function.arguments) == {"q": "dog"}
        assert completion.usage.prompt_tokens == 125 and completion.usage.prompt_tokens_details.cached_tokens == 100
        assert (reply.usage.input_tokens, reply.usage.cache_read_tokens) == (25, 100)

    run(_with_fake(test))


@pytest.mark.parametrize("wants_usage", [False, True])
def test_chat_streams_come_back_as_chunks(wants_usage: bool) -> None:
    async def test(fake: AnthropicFake, adapter: AnthropicAdapter) -> None:
        fake.thinking_text = "hmm let me see"
        fake.tool_uses = [{"id": "toolu_1", "name": "lookup", "input": {"q": "dog"}}]
        reply = await adapter.send(chat_call(CHAT, stream=True, wants_usage=wants_usage))
        raw = await drain(reply)
        completion = openai_stream(raw)
        choice = completion.choices[0]
        assert choice.message.content == fake.reply_text and choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls[0].id == "toolu_1"
        assert orjson.loads(choice.message.tool_calls[0].function.arguments) == {"q": "dog"}
        assert (completion.usage is not None) == wants_usage
        assert reply.usage.output_tokens == fake.output_tokens()  # thinking billed though not relayed
        assert b"hmm" not in raw

    run(_with_fake(test))


def test_4xx_is_relayed_in_each_client_format() -> None:
    async def test(fake: AnthropicFake, adapter: AnthropicAdapter) -> None:
        fake.faults.status, fake.faults.message = 400, "prompt is too long: 210000 tokens > 200000 maximum"
        native = await adapter.send(messages_call(NATIVE))
        assert native.status == 400
        assert orjson.loads(native.body or b"")["error"] == {"type": "invalid_request_error",
                                                             "message": fake.faults.message}
        chat = await adapter.send(chat_call(CHAT))
        err = orjson.loads(chat.body or b"")["error"]
        assert chat.status == 400 and err["message"] == fake.faults.message and err["type"] == "invalid_request_error"
        assert chat.usage.output_tokens == 0 and not chat.usage.reported

    run(_with_fake(test))


@pytest.mark.parametrize("status", [429, 500, 529])
def test_overload_and_server_errors_are_retryable(status: int) -> None:
    async def test(fake: AnthropicFake, adapter: AnthropicAdapter) -> None:
        fake.faults.status = status
        with pytest.raises(UpstreamError) as err:
            await adapter.send(messages_call(NATIVE, stream=True))
        assert err.value.retryable and err.value.status == status

    run(_with_fake(test))


def test_an_error_event_before_any_content_is_retryable() -> None:
    async def test(fake: AnthropicFake, adapter: AnthropicAdapter) -> None:
        fake.faults.error_event_after = 0  # right after message_start and ping, as Anthropic does when overloaded
        with pytest.raises(UpstreamError) as err:
            await adapter.send(messages_call(NATIVE, stream=True, bound=40))
        assert err.value.retryable and "overloaded_error" in str(err.value)

    run(_with_fake(test))


@pytest.mark.parametrize("fault", ["break_after", "malformed_after", "error_event_after"])
@pytest.mark.parametrize("route", ["messages", "chat"])
def test_a_stream_failing_midway_bills_the_reported_input_and_the_streamed_output(fault: str, route: str) -> None:
    async def test(fake: AnthropicFake, adapter: AnthropicAdapter) -> None:
        setattr(fake.faults, fault, 5)
        call = messages_call(NATIVE, stream=True, bound=999) if route == "messages" else \
            chat_call(CHAT, stream=True, bound=999)
        reply = await adapter.send(call)
        with pytest.raises(UpstreamError) as err:
            await drain(reply)
        assert not err.value.retryable and fake.sent_text
        assert reply.usage.input_tokens == 25  # message_start reported it, no need for our bound
        assert reply.usage.output_tokens == count_text(fake.sent_text, "o200k_base")
        assert not reply.usage.reported

    run(_with_fake(test))


def test_closing_the_stream_closes_the_upstream_connection() -> None:
    async def test(fake: AnthropicFake, adapter: AnthropicAdapter) -> None:
        fake.faults.endless, fake.faults.chunk_delay_s = True, 0.01
        reply = await adapter.send(messages_call(NATIVE, stream=True))
        await take(reply, 6)
        assert reply.chunks is not None and fake.client_gone is not None
        await close(reply)
        await asyncio.wait_for(fake.client_gone.wait(), 5)
        assert reply.usage.input_tokens == 25 and reply.usage.output_tokens > 0

    run(_with_fake(test))


def test_cost_is_tokens_times_the_catalog_price_of_claude_sonnet_4_5() -> None:
    async def test(fake: AnthropicFake, adapter: AnthropicAdapter) -> None:
        fake.input_tokens, fake.cache_read_tokens, fake.cache_write_tokens = 10_000, 100_000, 20_000
        fake.reply_text = " ".join(["word"] * 1000)
        reply = await adapter.send(messages_call(NATIVE))
        price = catalog_price("anthropic", MODEL, input_tokens=130_000)
        assert price is not None
        u = reply.usage
        cost = price.cost(u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)
        # 10k x $3/M + 100k x $0.30/M + 20k x $3.75/M + 1000 x $15/M
        assert format_usd(cost) == "0.15"

    run(_with_fake(test))
