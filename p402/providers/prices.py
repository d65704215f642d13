"""Prices from the `genai-prices` package, which ships its data and works offline.

Rates are looked up once per model at start (a lookup costs tens of
microseconds) and kept as `core.policy.Price` in nano-USD per million tokens,
rounded *up* when a catalog rate has more than 9 decimals.

Three things the catalog does that a flat `Price` cannot, and how we handle them:

- Date-conditional prices (a model's price changed on a date): the price in
  force now is used.
- Long-prompt tiers (e.g. Claude Sonnet 4.5 above 200k input tokens, Gemini 2.5
  Pro above 200k): the whole request is billed at the tier its *total* prompt
  (fresh + cached + cache-written tokens) falls in. `catalog_tiers` returns every
  tier; `tier_price(tiers, prompt_tokens)` picks one. `catalog_price` without a
  prompt size returns the most expensive rates of all tiers, an upper bound that
  never under-estimates; pass `input_tokens` to get the exact tier.
- Free models (OpenRouter `:free`, Gemma on the Gemini API, moderation): the
  catalog lists them with no rates at all, and they are priced at zero.
  Models priced per character, second or image only (TTS, Whisper) are not
  token-priced and get no price (the gateway cannot bound their cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from p402.core.money import NANOS_PER_USD
from p402.core.policy import Price

__all__ = ["catalog_price", "catalog_tiers", "catalog_context_window", "catalog_models", "tier_price", "PriceTier",
           "CATALOG_PROVIDER"]

# Our provider names -> the price package's provider ids.
CATALOG_PROVIDER = {"simulated": "openai", "openai": "openai", "anthropic": "anthropic", "gemini": "google",
                    "bedrock": "aws", "openrouter": "openrouter"}
_RATE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Rates that apply when a request's total prompt tokens exceed `above` (0: from the first token)."""

    above: int
    price: Price


def _nanos(rate: Decimal) -> int:
    exact = rate * NANOS_PER_USD
    whole = int(exact)
    return whole + 1 if exact > whole else whole  # round up: a price is never under-stated


def _rate_at(value: Any, prompt_tokens: int) -> int | None:
    """One catalog rate (flat or tiered) for a prompt of `prompt_tokens`, in nanos per Mtok."""
    if value is None:
        return None
    tiers = getattr(value, "tiers", None)
    if tiers is None:
        return _nanos(Decimal(value))
    rate = value.base
    for tier in sorted(tiers, key=lambda t: t.start, reverse=True):
        if prompt_tokens > tier.start:  # the package's rule: crossing a tier reprices every token
            rate = tier.price
            break
    return _nanos(Decimal(rate))


def _normalize(provider: str, upstream: str) -> str:
    if provider == "gemini":
        return upstream.removeprefix("models/")  # the Gemini API's resource name form
    if provider == "bedrock" and upstream.startswith("arn:"):
        return upstream.rsplit("/", 1)[-1]  # an inference-profile or model ARN ends with the model id
    return upstream


def _catalog_model(provider: str, upstream: str) -> Any | None:
    from genai_prices import data_snapshot  # imported lazily: loading the catalog takes ~100 ms

    snapshot = data_snapshot.get_snapshot()
    try:
        _, model = snapshot.find_provider_model(_normalize(provider, upstream), None,
                                                CATALOG_PROVIDER.get(provider, provider), None)
    except Exception:  # the package raises LookupError or its own types for unknown models
        return None
    return model


def _model_prices(provider: str, upstream: str) -> Any | None:
    model = _catalog_model(provider, upstream)
    return None if model is None else model.get_prices(datetime.now(timezone.utc))


def catalog_context_window(provider: str, upstream: str) -> int | None:
    """The most input tokens the catalog says `upstream` at `provider` accepts, or None."""
    model = _catalog_model(provider, upstream)
    window = getattr(model, "context_window", None) if model is not None else None
    return window if isinstance(window, int) and window > 0 else None


def _tiers_of(prices: Any) -> tuple[PriceTier, ...] | None:
    values = {k: getattr(prices, k, None) for k in _RATE_KEYS}
    if values["input_mtok"] is None and values["output_mtok"] is None:
        priced = [k for k, v in vars(prices).items() if not k.startswith("_") and v is not None]
        return None if priced else (PriceTier(0, Price(0, 0)),)  # listed without any rate: free
    starts = sorted({0} | {t.start for v in values.values() for t in (getattr(v, "tiers", None) or ())})
    out = []
    for start in starts:
        n = start + 1 if start else 0
        inp, outp, read, write = (_rate_at(values[k], n) for k in _RATE_KEYS)
        out.append(PriceTier(start, Price(inp or 0, outp or 0, read, write)))
    return tuple(out)


def catalog_tiers(provider: str, upstream: str) -> tuple[PriceTier, ...] | None:
    """Every prompt-size tier of `upstream` at `provider`, cheapest first; None when unknown."""
    prices = _model_prices(provider, upstream)
    return None if prices is None else _tiers_of(prices)


def _upper(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def tier_price(tiers: tuple[PriceTier, ...], prompt_tokens: int | None = None) -> Price:
    """The rates for a prompt of `prompt_tokens` total input tokens; None: the highest of every tier."""
    if prompt_tokens is not None:
        chosen = tiers[0].price
        for tier in tiers:
            if prompt_tokens > tier.above or tier.above == 0:
                chosen = tier.price
        return chosen
    top = tiers[0].price
    for tier in tiers[1:]:
        p = tier.price
        top = Price(max(top.input, p.input), max(top.output, p.output), _upper(top.cache_read, p.cache_read),
                    _upper(top.cache_write, p.cache_write))
    return top


def catalog_price(provider: str, upstream: str, input_tokens: int | None = None) -> Price | None:
    """The package's price for `upstream` at `provider`, or None when it knows none.

    `input_tokens` is the request's total prompt (fresh + cached + cache-written):
    given, the tier it falls in; omitted, an upper bound over every tier.
    """
    tiers = catalog_tiers(provider, upstream)
    return None if tiers is None else tier_price(tiers, input_tokens)


def _usable_name(model: Any) -> str | None:
    """A name a client can send for a catalog entry. Some entries are keyed by a pseudo id
    (Bedrock's `regional.*`, fine-tune families `ft:*`); the first is the on-demand id without
    the prefix, the second has no single name and is left out of listings."""
    for name in (model.id, model.id.removeprefix("regional.")):
        if model.is_match(name):
            return str(name)
    return None


def catalog_models(provider: str) -> list[tuple[str, Price]]:
    """Every model the package prices for `provider`, with its base (short-prompt) rates, by name."""
    from genai_prices import data_snapshot

    wanted = CATALOG_PROVIDER.get(provider, provider)
    now = datetime.now(timezone.utc)
    out: dict[str, Price] = {}
    for p in data_snapshot.get_snapshot().providers:
        if p.id != wanted:
            continue
        for model in p.models:
            name = _usable_name(model)
            tiers = _tiers_of(model.get_prices(now))
            if name is not None and tiers is not None:
                out.setdefault(name, tiers[0].price)
    return sorted(out.items())
