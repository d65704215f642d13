"""The OpenAI adapter against a fake OpenAI server on loopback."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from p402.core.money import format_usd
from p402.errors import UpstreamError
from p402.pipeline.tokens import count_text
from p402.providers.openai import OpenAIAdapter
from p402.providers.prices import catalog_price
from tests.providers.fakes.openai_fake import OpenAIFake
from tests.providers.helpers import chat_call, chat_text, close, drain, payloads, run, take

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why budgets?"}]


async def _with_fake(test, fake: OpenAIFake | None = None, **settings):
    fake = fake or OpenAIFake()
    await fake.start()
    adapter = OpenAIAdapter("openai", {"api_key": fake.api_key, "base_url": fake.base_url, **settings})
    try:
        return await test(fake, adapter)
    finally:
        await adapter.close()
        await fake.stop()


def test_chat_relays_the_answer_and_splits_cached_tokens_out_of_the_input() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.prompt_tokens, fake.cached_tokens, fake.reasoning_tokens = 1200, 1024, 64
        reply = await adapter.send(chat_call({"messages": MESSAGES, "max_completion_tokens": 300}))
        assert reply.status == 200 and reply.chunks is None
        doc = orjson.loads(reply.body or b"")
        assert doc["object"] == "chat.completion"
        assert doc["choices"][0]["message"]["content"] == fake.reply_text
        sent = fake.requests[0]
        assert sent.path == "/v1/chat/completions"
        assert sent.headers["Authorization"] == "Bearer sk-test-openai"
        assert sent.json["max_completion_tokens"] == 300 and sent.json["messages"] == MESSAGES
        u = reply.usage
        assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens) == (1200 - 1024, 1024, 0)
        assert u.output_tokens == fake.completion_tokens()  # reasoning tokens are inside completion_tokens
        assert u.reported and u.provider_cost_usd is None

    run(_with_fake(test))


def test_stream_asks_for_usage_and_strips_the_usage_chunk_the_client_did_not_ask_for() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        reply = await adapter.send(chat_call({"messages": MESSAGES}, stream=True))
        assert reply.content_type == "text/event-stream"
        raw = await drain(reply)
        assert fake.requests[0].json["stream_options"] == {"include_usage": True}
        docs = payloads(raw)
        assert docs[-1] == "[DONE]" and raw.endswith(b"data: [DONE]\n\n")
        assert all(d["choices"] for d in docs[:-1])  # no usage-only chunk reached the client
        assert chat_text(raw) == fake.reply_text
        assert reply.usage.reported and reply.usage.input_tokens == fake.prompt_tokens
        assert reply.usage.output_tokens == fake.completion_tokens()

    run(_with_fake(test))


def test_stream_relays_the_usage_chunk_when_the_client_asked_for_it() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        reply = await adapter.send(chat_call({"messages": MESSAGES}, stream=True, wants_usage=True))
        docs = payloads(await drain(reply))
        usage_chunks = [d for d in docs[:-1] if d["choices"] == []]
        assert len(usage_chunks) == 1 and usage_chunks[0]["usage"]["prompt_tokens"] == fake.prompt_tokens

    run(_with_fake(test))


def test_tool_calls_stream_through_and_their_arguments_count_as_output() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.reply_text = ""
        fake.tool_calls = [{"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}]
        reply = await adapter.send(chat_call({"messages": MESSAGES, "tools": [{"type": "function", "function": {
            "name": "get_weather", "parameters": {"type": "object"}}}]}, stream=True))
        docs = payloads(await drain(reply))
        args = "".join(tc["function"].get("arguments", "") for d in docs[:-1] for c in d["choices"]
                       for tc in (c["delta"].get("tool_calls") or ()))
        assert args == '{"city":"Paris"}'
        assert docs[-2]["choices"][0]["finish_reason"] == "tool_calls"

    run(_with_fake(test))


def test_embeddings_bill_the_prompt_tokens_only() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        from p402.pipeline.ports import Call

        call = Call(route="embeddings", body={"model": "text-embedding-3-small", "input": ["a", "b"]},
                    stream=False, upstream_model="text-embedding-3-small")
        reply = await adapter.send(call)
        doc = orjson.loads(reply.body or b"")
        assert len(doc["data"]) == 2 and fake.requests[0].path == "/v1/embeddings"
        assert (reply.usage.input_tokens, reply.usage.output_tokens) == (fake.prompt_tokens, 0)

    run(_with_fake(test))


def test_a_4xx_is_relayed_verbatim_with_no_usage() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.faults.status, fake.faults.message = 400, "This model's maximum context length is 128000 tokens."
        reply = await adapter.send(chat_call({"messages": MESSAGES}, stream=True))
        assert reply.status == 400 and reply.chunks is None
        assert orjson.loads(reply.body or b"")["error"]["message"] == fake.faults.message
        assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.reported) == (0, 0, False)

    run(_with_fake(test))


@pytest.mark.parametrize("status", [429, 500, 503])
def test_429_and_5xx_are_retryable_failures(status: int) -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.faults.status = status
        with pytest.raises(UpstreamError) as err:
            await adapter.send(chat_call({"messages": MESSAGES}))
        assert err.value.retryable and err.value.status == status

    run(_with_fake(test))


def test_a_hung_provider_times_out_as_a_retryable_failure() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.faults.hang = True
        with pytest.raises(UpstreamError) as err:
            await adapter.send(chat_call({"messages": MESSAGES}, stream=True))
        assert err.value.retryable and err.value.status == 504

    run(_with_fake(test, timeout_s=0.3))


def test_a_reset_before_the_first_byte_is_retryable() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.faults.reset_before = True
        with pytest.raises(UpstreamError) as err:
            await adapter.send(chat_call({"messages": MESSAGES}, stream=True))
        assert err.value.retryable

    run(_with_fake(test))


def test_a_refused_connection_is_retryable() -> None:
    async def test() -> None:
        fake = OpenAIFake()
        base = await fake.start()
        await fake.stop()  # nobody listens on that port any more
        adapter = OpenAIAdapter("openai", {"api_key": "k", "base_url": base})
        try:
            with pytest.raises(UpstreamError) as err:
                await adapter.send(chat_call({"messages": MESSAGES}))
            assert err.value.retryable
        finally:
            await adapter.close()

    run(test())


@pytest.mark.parametrize("fault", ["break_after", "malformed_after", "error_event_after"])
def test_a_stream_failing_midway_stops_and_bills_what_was_streamed(fault: str) -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        setattr(fake.faults, fault, 4)
        reply = await adapter.send(chat_call({"messages": MESSAGES}, stream=True, bound=57))
        got: list[bytes] = []
        with pytest.raises(UpstreamError) as err:
            assert reply.chunks is not None
            async for chunk in reply.chunks:
                got.append(chunk)
        assert not err.value.retryable
        relayed = chat_text(b"".join(got))
        assert relayed == fake.sent_text and relayed  # everything streamed was relayed, nothing after
        assert not reply.usage.reported
        assert reply.usage.input_tokens == 57
        assert reply.usage.output_tokens == count_text(fake.sent_text, "o200k_base")

    run(_with_fake(test))


def test_a_stream_that_stalls_times_out_midway() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.faults.endless, fake.faults.chunk_delay_s = True, 0.05
        reply = await adapter.send(chat_call({"messages": MESSAGES}, stream=True, bound=9))
        with pytest.raises(UpstreamError) as err:
            await drain(reply)
        assert err.value.status == 504 and reply.usage.output_tokens > 0

    run(_with_fake(test, timeout_s=0.4))


def test_closing_the_stream_closes_the_upstream_connection() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.faults.endless, fake.faults.chunk_delay_s = True, 0.01
        reply = await adapter.send(chat_call({"messages": MESSAGES}, stream=True, bound=30))
        got = await take(reply, 5)
        assert reply.chunks is not None
        await close(reply)  # what the gateway does when its client goes away
        assert fake.client_gone is not None
        await asyncio.wait_for(fake.client_gone.wait(), 5)
        relayed = chat_text(b"".join(got))
        assert reply.usage.input_tokens == 30
        assert reply.usage.output_tokens == count_text(relayed, "o200k_base") > 0

    run(_with_fake(test))


def test_closing_a_stream_never_iterated_still_closes_the_upstream() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.faults.endless, fake.faults.chunk_delay_s = True, 0.01
        reply = await adapter.send(chat_call({"messages": MESSAGES}, stream=True, bound=30))
        assert reply.chunks is not None
        await close(reply)
        assert fake.client_gone is not None
        await asyncio.wait_for(fake.client_gone.wait(), 5)
        assert reply.usage.input_tokens == 30

    run(_with_fake(test))


def test_cost_is_tokens_times_the_catalog_price_of_gpt_4o_mini() -> None:
    async def test(fake: OpenAIFake, adapter: OpenAIAdapter) -> None:
        fake.prompt_tokens, fake.cached_tokens = 1_000_000, 400_000
        fake.reply_text = " ".join(["word"] * 100)
        reply = await adapter.send(chat_call({"messages": MESSAGES}))
        price = catalog_price("openai", "gpt-4o-mini")
        assert price is not None
        u = reply.usage
        cost = price.cost(u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)
        # 600k fresh x $0.15/M + 400k cached x $0.075/M + 100 out x $0.60/M
        assert format_usd(cost) == "0.12006"

    run(_with_fake(test))


def test_the_api_key_never_shows_in_the_adapter_repr() -> None:
    adapter = OpenAIAdapter("openai", {"api_key": "sk-secret-value"})
    assert "sk-secret-value" not in repr(adapter)
