"""FinOps FOCUS 1.2 cost rows: one per settled call, streamed as CSV.

FOCUS (FinOps Open Cost and Usage Specification) is the column set FinOps tools
ingest from every cloud; exporting it puts AI spend through p402 next to the rest
of a company's bill. The mapping (see docs/ledger.md):

- cost: BilledCost = EffectiveCost = ListCost = ContractedCost = the settled cost.
  p402 prices at the provider's list price and knows no negotiated discount.
- time: ChargePeriodStart is the decision (floored to the second), ChargePeriodEnd
  the settlement (rounded up, always after the start); the billing period is the
  UTC calendar month of the charge. FOCUS datetimes are `YYYY-MM-DDTHH:mm:ssZ`.
- quantity: tokens (input + output) in both Pricing and Consumed columns, unit
  `Tokens`. An orphaned call (its gateway vanished) is settled at its reservation,
  so its quantity is the reservation's bound: input tokens + max_tokens.
- who: SubAccount = department, Resource = the virtual key, Tags = every scope
  the call was attributed to; Sku = provider/model, SkuPrice = that model at the
  policy version the call was priced under.
- Extra columns carry the `x_` prefix FOCUS reserves for custom columns.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

import orjson

from p402.core.ledger import ChainRow
from p402.core.money import MoneyError, format_usd, parse_usd
from p402.prove.calls import Call, Progress, calls
from p402.prove.export import csv_encoded
from p402.prove.rows import parse_ts

__all__ = ["FOCUS_VERSION", "FOCUS_COLUMNS", "focus_lines", "focus_row"]

FOCUS_VERSION = "1.2"
FOCUS_COLUMNS = (
    "BilledCost", "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargePeriodEnd", "ChargePeriodStart", "ConsumedQuantity", "ConsumedUnit",
    "ContractedCost", "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "RegionId", "ResourceId", "ResourceName", "ServiceCategory", "ServiceName",
    "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
    "x_EventId", "x_DecisionEventId", "x_InputTokens", "x_OutputTokens", "x_Flags",
)
_TAG_SCOPES = ("department", "employee", "project", "customer", "feature", "workflow", "key")
# Who runs the service (provider) and sells it (invoice issuer), by p402 provider name.
_COMPANY = {"openai": "OpenAI", "anthropic": "Anthropic", "gemini": "Google", "bedrock": "Amazon Web Services",
            "openrouter": "OpenRouter", "simulated": "p402"}
_SERVICE = {"openai": "OpenAI API", "anthropic": "Anthropic API", "gemini": "Gemini API",
            "bedrock": "Amazon Bedrock", "openrouter": "OpenRouter", "simulated": "p402 simulated provider"}
# Who made the model (the publisher) when it is resold by someone else, by model-name prefix.
_PUBLISHER_PREFIXES = (("gpt", "OpenAI"), ("o1", "OpenAI"), ("o3", "OpenAI"), ("o4", "OpenAI"),
                       ("text-embedding", "OpenAI"), ("claude", "Anthropic"), ("anthropic", "Anthropic"),
                       ("gemini", "Google"), ("google", "Google"), ("llama", "Meta"), ("meta", "Meta"),
                       ("mistral", "Mistral AI"), ("amazon", "Amazon Web Services"), ("cohere", "Cohere"))


def _second_floor(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _second_ceil(moment: datetime) -> datetime:
    return _second_floor(moment) + (timedelta(seconds=1) if moment.microsecond else timedelta())


def _focus_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _month(moment: datetime) -> tuple[datetime, datetime]:
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def _publisher(model: str, provider: str) -> str:
    # Resellers name models "vendor/model" (OpenRouter) or "vendor.model" (Bedrock).
    lowered = model.lower()
    for name in (lowered, lowered.split("/")[-1], lowered.split(".")[-1]):
        for prefix, company in _PUBLISHER_PREFIXES:
            if name.startswith(prefix):
                return company
    return _COMPANY.get(provider, provider)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def focus_row(call: Call) -> dict[str, str] | None:
    """The FOCUS columns of one settlement; None for rows that are not charges (decisions, free releases)."""
    body = call.body
    if call.kind not in ("settle", "expire", "release"):
        return None
    try:
        cost = parse_usd(body.get("cost_usd") or "0")
    except MoneyError:
        return None  # an unreadable amount is not invented; the CSV export still shows the row
    if call.kind == "release" and cost == 0:
        return None
    provider, model = str(call.get("provider") or ""), str(call.get("model") or "")
    tokens_in, tokens_out = _int(body.get("input_tokens")), _int(body.get("output_tokens"))
    if call.kind == "expire" and tokens_in + tokens_out == 0 and call.decision is not None:
        # Settled at its reservation: the prompt's bound and max_tokens for each of the `n` choices.
        tokens_in = _int(call.decision.get("input_tokens"))
        tokens_out = _int(call.decision.get("max_tokens")) * max(_int(call.decision.get("completions")), 1)
    settled_at = parse_ts(str(body["ts"]))
    started = parse_ts(str(call.decision["ts"])) if call.decision and call.decision.get("ts") else settled_at
    start = _second_floor(min(started, settled_at))
    end = max(_second_ceil(settled_at), start + timedelta(seconds=1))
    period_start, period_end = _month(start)
    tags = {k: str(call.get(k)) for k in _TAG_SCOPES if call.get(k)}
    amount = format_usd(cost)
    quantity = str(tokens_in + tokens_out)
    flags = body.get("flags") or []
    description = f"{model or 'unknown model'} via {provider or 'unknown provider'}: {tokens_in} input + " \
                  f"{tokens_out} output tokens"
    if call.kind == "expire" or "orphaned" in flags:
        description += " (orphaned call settled at its reservation)"
    key = str(call.get("key") or "")
    tenant = str(call.get("tenant") or "")
    return {
        "BilledCost": amount, "EffectiveCost": amount, "ListCost": amount, "ContractedCost": amount,
        "BillingCurrency": "USD",
        "BillingPeriodStart": _focus_time(period_start), "BillingPeriodEnd": _focus_time(period_end),
        "ChargePeriodStart": _focus_time(start), "ChargePeriodEnd": _focus_time(end),
        "ChargeCategory": "Usage", "ChargeClass": "", "ChargeDescription": description,
        "ConsumedQuantity": quantity, "ConsumedUnit": "Tokens",
        "PricingQuantity": quantity, "PricingUnit": "Tokens",
        "ProviderName": _COMPANY.get(provider, provider), "PublisherName": _publisher(model, provider),
        "InvoiceIssuerName": _COMPANY.get(provider, provider),
        "RegionId": str(body.get("region") or call.get("region") or ""),
        "ResourceId": f"p402:{tenant}:key/{key}" if key else "", "ResourceName": key,
        "ServiceCategory": "AI and Machine Learning", "ServiceName": _SERVICE.get(provider, provider),
        "SkuId": f"{provider}/{model}",
        "SkuPriceId": f"{provider}/{model}@policy-v{call.get('policy_version') or 0}",
        "SubAccountId": str(call.get("department") or ""), "SubAccountName": str(call.get("department") or ""),
        "Tags": orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode(),
        "x_EventId": str(body.get("event_id") or ""), "x_DecisionEventId": str(body.get("ref") or ""),
        "x_InputTokens": str(tokens_in), "x_OutputTokens": str(tokens_out), "x_Flags": " ".join(map(str, flags)),
    }


def focus_lines(rows: Iterable[ChainRow], *, progress: Progress | None = None,
                total: int | None = None) -> Iterator[bytes]:
    """The FOCUS CSV: a header line, then one line per settled call, in ledger order."""
    rows_of_calls = (focus_row(call) for call in calls(rows, progress=progress, total=total))
    return csv_encoded(FOCUS_COLUMNS, ([row[c] for c in FOCUS_COLUMNS] for row in rows_of_calls if row is not None))

