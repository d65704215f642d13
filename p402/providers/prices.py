"""Prices from the `genai-prices` package, which ships its data and works offline.

Rates are looked up once per model at start (a lookup costs tens of
microseconds) and kept as `core.policy.Price` in nano-USD per million tokens.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from p402.core.money import NANOS_PER_USD
from p402.core.policy import Price

__all__ = ["catalog_price", "CATALOG_PROVIDER"]

# Our provider names -> the price package's provider ids.
CATALOG_PROVIDER = {"simulated": "openai", "openai": "openai", "anthropic": "anthropic", "gemini": "google",
                    "bedrock": "aws", "openrouter": "openrouter"}


def _rate(value: Any) -> int | None:
    if value is None:
        return None
    # Tiered prices: the base rate; tiers above it (long prompts) are handled by
    # the provider adapters that know their thresholds.
    base = getattr(value, "base", value)
    return int(Decimal(base) * NANOS_PER_USD)


def catalog_price(provider: str, upstream: str) -> Price | None:
    """The package's price for `upstream` at `provider`, or None when it knows none."""
    from genai_prices import data_snapshot  # imported lazily: loading the catalog takes ~100 ms

    snapshot = data_snapshot.get_snapshot()
    try:
        _, model = snapshot.find_provider_model(upstream, None, CATALOG_PROVIDER.get(provider, provider), None)
    except LookupError:
        return None
    except Exception:  # the package raises its own error types for unknown models
        return None
    prices = model.prices
    if not hasattr(prices, "input_mtok"):
        return None  # date-conditional price lists are not used by the models we route
    inp, out = _rate(getattr(prices, "input_mtok", None)), _rate(getattr(prices, "output_mtok", None))
    if inp is None and out is None:
        return None
    return Price(inp or 0, out or 0, _rate(getattr(prices, "cache_read_mtok", None)),
                 _rate(getattr(prices, "cache_write_mtok", None)))
