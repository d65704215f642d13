"""The OpenRouter adapter against a fake OpenRouter: usage accounting and its reported cost."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from p402.core.money import format_usd
from p402.errors import UpstreamError
from p402.pipeline.tokens import count_text
from p402.providers.openrouter import OpenRouterAdapter, cost_string
from p402.providers.prices import catalog_price
from tests.providers.fakes.openrouter_fake import OpenRouterFake
from tests.providers.helpers import chat_call, chat_text, drain, messages_call, payloads, run

MODEL = "anthropic/claude-sonnet-4.5"
MESSAGES = [{"role": "user", "content": "Why budgets?"}]


async def _with_fake(test):
    fake = OpenRouterFake()
    await fake.start()
    adapter = OpenRouterAdapter("openrouter", {"api_key": fake.api_key, "base_url": fake.base_url})
    try:
        return await test(fake, adapter)
    finally:
        await adapter.close()
        await fake.stop()


def test_the_default_base_url_is_openrouters_api() -> None:
    assert OpenRouterAdapter("openrouter", {"api_key": "k"}).base_url == "https://openrouter.ai/api/v1"


def test_usage_accounting_is_requested_and_its_cost_kept_exactly() -> None:
    async def test(fake: OpenRouterFake, adapter: OpenRouterAdapter) -> None:
        fake.prompt_tokens, fake.cached_tokens, fake.cache_write_tokens = 5000, 3000, 1000
        reply = await adapter.send(chat_call({"model": MODEL, "messages": MESSAGES, "max_tokens": 100}))
        sent = fake.requests[0]
        assert sent.path == "/api/v1/chat/completions" and sent.json["usage"] == {"include": True}
        assert sent.headers["Authorization"] == f"Bearer {fake.api_key}"
        u = reply.usage
        assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens) == (1000, 3000, 1000)
        assert u.provider_cost_usd == "0.000123456"
        assert orjson.loads(reply.body or b"")["usage"]["cost"] == pytest.approx(0.000123456)

    run(_with_fake(test))


def test_streams_skip_comments_strip_the_usage_chunk_and_keep_the_cost() -> None:
    async def test(fake: OpenRouterFake, adapter: OpenRouterAdapter) -> None:
        fake.cost = "0.0421"
        reply = await adapter.send(chat_call({"model": MODEL, "messages": MESSAGES}, stream=True))
        raw = await drain(reply)
        assert b"OPENROUTER PROCESSING" not in raw and chat_text(raw) == fake.reply_text
        assert all(p == "[DONE]" or p["choices"] for p in payloads(raw))
        assert reply.usage.provider_cost_usd == "0.0421" and reply.usage.reported

    run(_with_fake(test))


def test_an_in_band_error_chunk_ends_the_stream_as_a_failure() -> None:
    async def test(fake: OpenRouterFake, adapter: OpenRouterAdapter) -> None:
        fake.faults.error_event_after = 3
        reply = await adapter.send(chat_call({"model": MODEL, "messages": MESSAGES}, stream=True, bound=12))
        with pytest.raises(UpstreamError) as err:
            await drain(reply)
        assert "Provider disconnected" in str(err.value)
        assert reply.usage.input_tokens == 12
        assert reply.usage.output_tokens == count_text(fake.sent_text, "o200k_base")
        assert reply.usage.provider_cost_usd is None

    run(_with_fake(test))


@pytest.mark.parametrize("code, retryable", [(400, False), (502, True)])
def test_an_error_answered_with_200_is_still_an_error(code: int, retryable: bool) -> None:
    async def test(fake: OpenRouterFake, adapter: OpenRouterAdapter) -> None:
        fake.error_in_body = {"code": code, "message": "No endpoints found"}
        if retryable:
            with pytest.raises(UpstreamError) as err:
                await adapter.send(chat_call({"model": MODEL, "messages": MESSAGES}))
            assert err.value.retryable
        else:
            reply = await adapter.send(chat_call({"model": MODEL, "messages": MESSAGES}))
            assert reply.status == 400 and orjson.loads(reply.body or b"")["error"]["message"] == "No endpoints found"

    run(_with_fake(test))


def test_messages_clients_get_max_tokens_on_openrouter() -> None:
    async def test(fake: OpenRouterFake, adapter: OpenRouterAdapter) -> None:
        await adapter.send(messages_call({"model": MODEL, "messages": MESSAGES, "max_tokens": 64}))
        assert fake.requests[0].json["max_tokens"] == 64

    run(_with_fake(test))


@pytest.mark.parametrize("value, text", [(0.000123456, "0.000123456"), (1e-07, "0.0000001"), (2, "2.0"),
                                         ("0.5", "0.5"), (None, None), (-1.0, None), (True, None)])
def test_cost_strings_are_exact_decimals(value: object, text: str | None) -> None:
    assert cost_string(value) == text


def test_cost_is_tokens_times_the_catalog_price_and_matches_the_reported_cost() -> None:
    async def test(fake: OpenRouterFake, adapter: OpenRouterAdapter) -> None:
        fake.prompt_tokens, fake.reply_text = 2000, " ".join(["w"] * 100)
        fake.cost = "0.0075"  # what OpenRouter charges: 2000 x $3/M + 100 x $15/M
        reply = await adapter.send(chat_call({"model": MODEL, "messages": MESSAGES}))
        price = catalog_price("openrouter", MODEL, input_tokens=2000)
        assert price is not None
        u = reply.usage
        cost = price.cost(u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)
        assert format_usd(cost) == "0.0075" and Decimal(u.provider_cost_usd or "0") == Decimal("0.0075")

    run(_with_fake(test))
