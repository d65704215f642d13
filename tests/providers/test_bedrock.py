"""The Bedrock adapter against a fake Bedrock runtime that checks every SigV4 signature."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from p402.core.money import format_usd
from p402.errors import UpstreamError
from p402.pipeline.tokens import count_text
from p402.providers.bedrock import BedrockAdapter
from p402.providers.prices import catalog_price
from tests.providers.fakes.bedrock_fake import BedrockFake
from tests.providers.helpers import chat_call, close, drain, messages_call, run, take
from tests.providers.sdk_readers import anthropic_stream, openai_completion, openai_stream

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
CHAT = {"model": MODEL, "max_tokens": 300, "temperature": 0.5, "stop": "END",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                         {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "tu_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "cat"}'}}]},
            {"role": "tool", "tool_call_id": "tu_1", "content": "a cat"},
            {"role": "user", "content": "So?"}],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "search",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}}}


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard credential chain, fed from the environment only (no files, no instance metadata)."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "fake-session-token")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/p402-test-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/p402-test-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


async def _with_fake(test, fake: BedrockFake | None = None, **settings):
    fake = fake or BedrockFake()
    await fake.start()
    adapter = BedrockAdapter("bedrock", {"region": "us-east-1", "base_url": fake.base_url, **settings})
    try:
        return await test(fake, adapter)
    finally:
        await adapter.close()
        await fake.stop()


def test_the_default_endpoint_is_the_regional_runtime() -> None:
    adapter = BedrockAdapter("bedrock", {"region": "eu-west-3"})
    assert adapter.base_url == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert adapter.url(MODEL, True).endswith("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream")


def test_requests_are_signed_and_translated_to_converse() -> None:
    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        reply = await adapter.send(chat_call(CHAT))
        assert reply.status == 200 and fake.signature_failures == 0
        sent = fake.requests[0]
        assert sent.path == f"/model/{MODEL}/converse"
        body = sent.json
        assert body["system"] == [{"text": "Be brief."}]
        assert body["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.5, "stopSequences": ["END"]}
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        assert body["messages"][0]["content"][1] == {"image": {"format": "jpeg", "source": {"bytes": "/9j/"}}}
        assert body["messages"][1]["content"] == [{"text": "Checking."}, {"toolUse": {
            "toolUseId": "tu_1", "name": "lookup", "input": {"q": "cat"}}}]
        assert body["messages"][2]["content"] == [
            {"toolResult": {"toolUseId": "tu_1", "content": [{"text": "a cat"}], "status": "success"}}, {"text": "So?"}]
        assert body["toolConfig"] == {"tools": [{"toolSpec": {"name": "lookup", "description": "search",
                                                              "inputSchema": {"json": {"type": "object"}}}}],
                                      "toolChoice": {"tool": {"name": "lookup"}}}

    run(_with_fake(test))


def test_a_wrong_secret_is_refused_by_the_signature_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")

    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        reply = await adapter.send(chat_call(CHAT))
        assert reply.status == 403 and fake.signature_failures == 1
        assert "signature" in orjson.loads(reply.body or b"")["error"]["message"]

    run(_with_fake(test))


def test_answers_become_chat_completions_with_cache_usage() -> None:
    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        fake.cache_read_tokens, fake.cache_write_tokens, fake.reasoning_text = 500, 60, "let me think"
        fake.tool_uses = [{"toolUseId": "tu_2", "name": "lookup", "input": {"q": "dog"}}]
        reply = await adapter.send(chat_call(CHAT))
        completion = openai_completion(reply.body or b"")
        choice = completion.choices[0]
        assert choice.message.content == fake.reply_text and choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls[0].id == "tu_2"
        u = reply.usage
        assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens) == (40, 500, 60)
        assert u.output_tokens == fake.output_tokens() and u.reported

    run(_with_fake(test))


@pytest.mark.parametrize("wants_usage", [False, True])
def test_event_streams_become_chunk_streams(wants_usage: bool) -> None:
    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        fake.reasoning_text = "thinking about it"
        fake.tool_uses = [{"toolUseId": "tu_2", "name": "lookup", "input": {"q": "dog"}}]
        reply = await adapter.send(chat_call(CHAT, stream=True, wants_usage=wants_usage))
        raw = await drain(reply)
        assert fake.requests[0].path == f"/model/{MODEL}/converse-stream" and fake.signature_failures == 0
        completion = openai_stream(raw)
        choice = completion.choices[0]
        assert choice.message.content == fake.reply_text and b"thinking" not in raw
        assert orjson.loads(choice.message.tool_calls[0].function.arguments) == {"q": "dog"}
        assert choice.finish_reason == "tool_calls" and (completion.usage is not None) == wants_usage
        assert reply.usage.reported and reply.usage.output_tokens == fake.output_tokens()

    run(_with_fake(test))


def test_messages_clients_are_served_through_chat() -> None:
    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        reply = await adapter.send(messages_call({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
                                                 stream=True))
        message = anthropic_stream(await drain(reply))
        assert message.content[0].text == fake.reply_text and message.usage.output_tokens == fake.output_tokens()

    run(_with_fake(test))


def test_4xx_is_relayed_with_bedrocks_message() -> None:
    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        fake.faults.status, fake.faults.message = 400, "The provided model identifier is invalid."
        reply = await adapter.send(chat_call(CHAT))
        err = orjson.loads(reply.body or b"")["error"]
        assert reply.status == 400 and err["message"] == fake.faults.message and err["type"] == "ValidationException"

    run(_with_fake(test))


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retryable(status: int) -> None:
    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        fake.faults.status = status
        with pytest.raises(UpstreamError) as err:
            await adapter.send(chat_call(CHAT, stream=True))
        assert err.value.retryable and err.value.status == status

    run(_with_fake(test))


def test_an_exception_before_any_output_is_retryable() -> None:
    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        fake.faults.error_event_after = 0
        with pytest.raises(UpstreamError) as err:
            await adapter.send(chat_call(CHAT, stream=True))
        assert err.value.retryable and "modelStreamErrorException" in str(err.value)

    run(_with_fake(test))


@pytest.mark.parametrize("fault", ["break_after", "malformed_after", "error_event_after"])
def test_a_stream_failing_midway_bills_the_bound_and_the_streamed_output(fault: str) -> None:
    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        setattr(fake.faults, fault, 4)
        reply = await adapter.send(chat_call(CHAT, stream=True, bound=321))
        with pytest.raises(UpstreamError) as err:
            await drain(reply)
        assert not err.value.retryable and fake.sent_text
        assert reply.usage.input_tokens == 321  # Bedrock reports usage only in the final metadata event
        assert reply.usage.output_tokens == count_text(fake.sent_text, "o200k_base")

    run(_with_fake(test))


def test_a_stream_without_metadata_falls_back_to_our_count() -> None:
    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        fake.send_metadata = False
        reply = await adapter.send(chat_call(CHAT, stream=True, bound=50))
        raw = await drain(reply)
        assert openai_stream(raw).choices[0].message.content == fake.reply_text
        assert not reply.usage.reported and reply.usage.input_tokens == 50
        assert reply.usage.output_tokens == count_text(fake.reply_text, "o200k_base")

    run(_with_fake(test))


def test_closing_the_stream_closes_the_upstream_connection() -> None:
    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        fake.faults.endless, fake.faults.chunk_delay_s = True, 0.01
        reply = await adapter.send(chat_call(CHAT, stream=True))
        await take(reply, 4)
        assert reply.chunks is not None and fake.client_gone is not None
        await close(reply)
        await asyncio.wait_for(fake.client_gone.wait(), 5)

    run(_with_fake(test))


def test_a_bedrock_api_key_is_sent_as_a_bearer_token() -> None:
    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        await adapter.send(chat_call(CHAT))
        assert fake.requests[0].headers["Authorization"] == "Bearer bedrock-api-key-1"

    run(_with_fake(test, api_key="bedrock-api-key-1"))


def test_cost_is_tokens_times_the_catalog_price_of_claude_3_5_sonnet_on_bedrock() -> None:
    async def test(fake: BedrockFake, adapter: BedrockAdapter) -> None:
        fake.input_tokens, fake.cache_read_tokens, fake.cache_write_tokens = 1000, 10_000, 2000
        fake.reply_text = " ".join(["w"] * 200)
        reply = await adapter.send(chat_call(CHAT))
        price = catalog_price("bedrock", MODEL)
        assert price is not None
        u = reply.usage
        cost = price.cost(u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)
        # 1000 x $3/M + 10k x $0.30/M + 2000 x $3.75/M + 200 x $15/M
        assert format_usd(cost) == "0.0165"

    run(_with_fake(test))
