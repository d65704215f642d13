"""Catalog prices: every model of the five providers priced, dated prices, long-prompt tiers."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from genai_prices import data_snapshot

from p402.core.policy import Price
from p402.providers.prices import CATALOG_PROVIDER, catalog_models, catalog_price, catalog_tiers, tier_price

PROVIDERS = ["openai", "anthropic", "gemini", "bedrock", "openrouter"]
M = 1_000_000_000  # nanos per USD: rates below are USD per Mtok x M


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_token_priced_model_of_the_package_is_priced(provider: str) -> None:
    listed = dict(catalog_models(provider))
    assert len(listed) > 20
    for name, price in listed.items():
        assert catalog_price(provider, name, input_tokens=0) == price, name
    catalog = next(p for p in data_snapshot.get_snapshot().providers if p.id == CATALOG_PROVIDER[provider])
    for model in catalog.models:
        prices = model.get_prices(datetime.now(timezone.utc))
        token_priced = any(getattr(prices, k, None) is not None for k in ("input_mtok", "output_mtok"))
        named = model.is_match(model.id) or model.is_match(model.id.removeprefix("regional."))
        if token_priced and named:
            assert any(n in listed for n in (model.id, model.id.removeprefix("regional."))), model.id


@pytest.mark.parametrize("provider, name", [
    ("openai", "gpt-4o-mini-2024-07-18"), ("openai", "o3"), ("openai", "text-embedding-3-small"),
    ("anthropic", "claude-sonnet-4-6"), ("anthropic", "claude-3-5-haiku-20241022"),
    ("gemini", "models/gemini-2.5-flash"), ("gemini", "gemini-embedding-001"),
    ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"), ("bedrock", "amazon.nova-pro-v1:0"),
    ("bedrock", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("openrouter", "anthropic/claude-sonnet-4.5"), ("simulated", "gpt-4o-mini")])
def test_names_clients_really_send_are_priced(provider: str, name: str) -> None:
    assert catalog_price(provider, name) is not None


def test_dated_prices_use_the_one_in_force_now() -> None:
    # o3 was cut from $10/$40 to $2/$8 per Mtok on 2025-06-10.
    assert catalog_price("openai", "o3") == Price(2 * M, 8 * M, M // 2, None)


def test_long_prompt_tiers_price_the_whole_request_at_its_tier() -> None:
    tiers = catalog_tiers("anthropic", "claude-sonnet-4-5")
    assert tiers is not None and [t.above for t in tiers] == [0, 200_000]
    short = Price(3 * M, 15 * M, 3 * M // 10, 375 * M // 100)
    long = Price(6 * M, 225 * M // 10, 6 * M // 10, 75 * M // 10)
    assert tier_price(tiers, 200_000) == short and tier_price(tiers, 200_001) == long
    assert catalog_price("anthropic", "claude-sonnet-4-5", input_tokens=150_000) == short


def test_without_a_prompt_size_the_price_never_under_estimates() -> None:
    assert catalog_price("anthropic", "claude-sonnet-4-5") == catalog_price("anthropic", "claude-sonnet-4-5", 10**6)
    assert catalog_price("gemini", "gemini-2.5-pro") == Price(25 * M // 10, 15 * M, M // 4, None)


def test_free_models_cost_nothing_and_non_token_models_have_no_price() -> None:
    assert catalog_price("openrouter", "meta-llama/llama-3.3-70b-instruct:free") == Price(0, 0)
    assert catalog_price("openai", "tts-1") is None  # priced per character: no token bound possible
    assert catalog_price("openai", "no-such-model-anywhere") is None
