"""The Gemini adapter against a fake Gemini API: translation, usage, failures."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from p402.core.money import format_usd
from p402.errors import UpstreamError
from p402.pipeline.tokens import count_text
from p402.providers.gemini import GeminiAdapter
from p402.providers.prices import catalog_price
from tests.providers.fakes.gemini_fake import GeminiFake
from tests.providers.helpers import chat_call, close, drain, messages_call, run, take
from tests.providers.sdk_readers import anthropic_stream, openai_completion, openai_stream

MODEL = "gemini-2.5-flash"
CHAT = {"model": MODEL, "max_tokens": 400, "temperature": 0.2, "stop": ["END"],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_7", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "cat"}'}}]},
            {"role": "tool", "tool_call_id": "call_7", "content": "a cat"},
            {"role": "user", "content": "So?"}],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "search",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": "required"}


async def _with_fake(test, **settings):
    fake = GeminiFake()
    await fake.start()
    adapter = GeminiAdapter("gemini", {"api_key": fake.api_key, "base_url": fake.base_url, **settings})
    try:
        return await test(fake, adapter)
    finally:
        await adapter.close()
        await fake.stop()


def test_chat_requests_are_translated_to_generate_content() -> None:
    async def test(fake: GeminiFake, adapter: GeminiAdapter) -> None:
        await adapter.send(chat_call(CHAT))
        sent = fake.requests[0]
        assert sent.path == f"/v1beta/models/{MODEL}:generateContent"
        assert sent.headers["x-goog-api-key"] == fake.api_key and "key" not in sent.query
        body = sent.json
        assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
        assert body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "iVBO"}}
        assert body["contents"][1]["parts"] == [{"functionCall": {"name": "lookup", "args": {"q": "cat"}}}]
        assert body["contents"][2]["parts"] == [
            {"functionResponse": {"name": "lookup", "response": {"content": "a cat"}}}, {"text": "So?"}]
        assert body["generationConfig"] == {"maxOutputTokens": 400, "temperature": 0.2, "stopSequences": ["END"]}
        assert body["tools"] == [{"functionDeclarations": [{"name": "lookup", "description": "search",
                                                            "parameters": {"type": "object"}}]}]
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}

    run(_with_fake(test))


def test_answers_become_chat_completions_with_thoughts_billed_not_shown() -> None:
    async def test(fake: GeminiFake, adapter: GeminiAdapter) -> None:
        fake.thought_text, fake.thoughts_tokens = "Thinking hard", 120
        fake.prompt_tokens, fake.cached_tokens = 1000, 600
        reply = await adapter.send(chat_call(CHAT))
        completion = openai_completion(reply.body or b"")
        assert completion.choices[0].message.content == fake.reply_text
        assert completion.choices[0].finish_reason == "stop"
        u = reply.usage
        assert (u.input_tokens, u.cache_read_tokens) == (400, 600)
        assert u.output_tokens == fake.candidates_tokens() + 120 and u.reported

    run(_with_fake(test))


def test_function_calls_become_tool_calls() -> None:
    async def test(fake: GeminiFake, adapter: GeminiAdapter) -> None:
        fake.reply_text = ""
        fake.function_calls = [{"name": "lookup", "args": {"q": "dog"}}]
        completion = openai_completion((await adapter.send(chat_call(CHAT))).body or b"")
        call = completion.choices[0].message.tool_calls[0]
        assert completion.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "lookup" and orjson.loads(call.function.arguments) == {"q": "dog"}

    run(_with_fake(test))


@pytest.mark.parametrize("wants_usage", [False, True])
def test_streams_become_chunk_streams(wants_usage: bool) -> None:
    async def test(fake: GeminiFake, adapter: GeminiAdapter) -> None:
        fake.thought_text, fake.thoughts_tokens = "Thinking", 50
        fake.function_calls = [{"name": "lookup", "args": {"q": "dog"}}]
        reply = await adapter.send(chat_call(CHAT, stream=True, wants_usage=wants_usage))
        raw = await drain(reply)
        sent = fake.requests[0]
        assert sent.path == f"/v1beta/models/{MODEL}:streamGenerateContent" and sent.query == {"alt": "sse"}
        completion = openai_stream(raw)
        assert completion.choices[0].message.content == fake.reply_text and b"Thinking" not in raw
        assert completion.choices[0].message.tool_calls[0].function.name == "lookup"
        assert (completion.usage is not None) == wants_usage
        assert reply.usage.reported and reply.usage.output_tokens == fake.candidates_tokens() + 50

    run(_with_fake(test))


def test_messages_clients_are_served_through_chat() -> None:
    async def test(fake: GeminiFake, adapter: GeminiAdapter) -> None:
        reply = await adapter.send(messages_call({"model": MODEL, "system": "Be brief.",
                                                  "messages": [{"role": "user", "content": "Hi"}]}, stream=True))
        message = anthropic_stream(await drain(reply))
        assert message.content[0].text == fake.reply_text
        assert fake.requests[0].json["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert fake.requests[0].json["generationConfig"]["maxOutputTokens"] == 256

    run(_with_fake(test))


def test_4xx_is_relayed_in_openai_format() -> None:
    async def test(fake: GeminiFake, adapter: GeminiAdapter) -> None:
        fake.faults.status, fake.faults.message = 400, "Request contains an invalid argument."
        reply = await adapter.send(chat_call(CHAT))
        err = orjson.loads(reply.body or b"")["error"]
        assert reply.status == 400 and err["message"] == fake.faults.message and err["type"] == "INVALID_ARGUMENT"

    run(_with_fake(test))


@pytest.mark.parametrize("status", [429, 500, 503])
def test_exhausted_and_unavailable_are_retryable(status: int) -> None:
    async def test(fake: GeminiFake, adapter: GeminiAdapter) -> None:
        fake.faults.status = status
        with pytest.raises(UpstreamError) as err:
            await adapter.send(chat_call(CHAT, stream=True))
        assert err.value.retryable and err.value.status == status

    run(_with_fake(test))


@pytest.mark.parametrize("fault", ["break_after", "malformed_after", "error_event_after", "no_finish"])
def test_a_stream_failing_midway_bills_what_was_reported_or_streamed(fault: str) -> None:
    async def test(fake: GeminiFake, adapter: GeminiAdapter) -> None:
        if fault == "no_finish":
            fake.finish_reason = None  # the body ends cleanly but the answer never finished
        else:
            setattr(fake.faults, fault, 4)
        reply = await adapter.send(chat_call(CHAT, stream=True, bound=5000))
        with pytest.raises(UpstreamError) as err:
            await drain(reply)
        assert not err.value.retryable
        assert reply.usage.input_tokens == fake.prompt_tokens  # usageMetadata came with the first chunk
        words = len(fake.sent_text.split())
        assert reply.usage.output_tokens == max(words, count_text(fake.sent_text, "o200k_base"))

    run(_with_fake(test))


def test_closing_the_stream_closes_the_upstream_connection() -> None:
    async def test(fake: GeminiFake, adapter: GeminiAdapter) -> None:
        fake.faults.endless, fake.faults.chunk_delay_s = True, 0.01
        reply = await adapter.send(chat_call(CHAT, stream=True))
        await take(reply, 4)
        assert reply.chunks is not None and fake.client_gone is not None
        await close(reply)
        await asyncio.wait_for(fake.client_gone.wait(), 5)
        assert reply.usage.output_tokens > 0

    run(_with_fake(test))


def test_cost_of_a_long_prompt_uses_gemini_2_5_pros_upper_tier() -> None:
    async def test(fake: GeminiFake, adapter: GeminiAdapter) -> None:
        fake.prompt_tokens, fake.cached_tokens, fake.thoughts_tokens = 300_000, 100_000, 900
        fake.reply_text = " ".join(["w"] * 100)
        reply = await adapter.send(chat_call({**CHAT, "model": "gemini-2.5-pro"}))
        u = reply.usage
        prompt = u.input_tokens + u.cache_read_tokens
        price = catalog_price("gemini", "gemini-2.5-pro", input_tokens=prompt)
        assert price is not None
        cost = price.cost(u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)
        # above 200k: 200k x $2.50/M + 100k cached x $0.25/M + 1000 out x $15/M
        assert format_usd(cost) == "0.54"
        # without the prompt size the catalog gives the same upper-tier rates: never an under-estimate
        assert catalog_price("gemini", "gemini-2.5-pro") == price

    run(_with_fake(test))
