"""OpenRouter: the OpenAI-compatible adapter plus OpenRouter's own cost report.

OpenRouter reports what it charged in `usage.cost` (USD credits). We ask for
usage accounting explicitly (`usage: {include: true}`; newer OpenRouter always
sends it) and keep the cost as an exact decimal string in
`Usage.provider_cost_usd`.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from p402.pipeline.ports import Call, Usage
from p402.providers.openai import OpenAIAdapter, read_openai_usage

__all__ = ["OpenRouterAdapter", "cost_string"]


def cost_string(value: Any) -> str | None:
    """A reported cost as a plain decimal string, or None when it is not a number.

    orjson reads JSON numbers as floats. A float's `repr` is the shortest text
    that reads back to the same double, which is exactly what OpenRouter's
    JSON serializer wrote, so `Decimal(repr(x))` recovers the sent digits.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0:
        return None
    text = format(amount, "f")
    return text if "." in text else text + ".0"


class OpenRouterAdapter(OpenAIAdapter):
    """OpenRouter (https://openrouter.ai/api/v1)."""

    default_base_url = "https://openrouter.ai/api/v1"
    output_bound_field = "max_tokens"

    def request_body(self, call: Call) -> dict[str, Any]:
        body = super().request_body(call)
        if call.route == "chat":
            body["usage"] = {**(body.get("usage") or {}), "include": True}
        return body

    def read_usage(self, report: Mapping[str, Any], usage: Usage) -> None:
        read_openai_usage(report, usage)
        cost = cost_string(report.get("cost"))
        if cost is not None:
            usage.provider_cost_usd = cost
