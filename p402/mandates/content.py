"""A mandate's content: an AP2 v0.2 open payment mandate, as p402 profiles it.

The content is what a person reads and approves. p402 uses the AP2 open
payment mandate shape (`vct: mandate.payment.open.1`, a `constraints` array, a
`cnf` key-binding claim) and reads three constraints from it:

- `payment.budget` `{max, currency}`: the cap. AP2 types `max` as a JSON number
  in major units; p402 requires a decimal *string* (or an integer), because a
  JSON number with a fraction is a float and money here is exact. `currency`
  must be `USD`. p402 reads `max` as the cap of each budget window (AP2 reads
  it as the total across recurrences; for `period: total` the two agree).
- `payment.agent_recurrence` `{frequency}`: must match the budget's period
  (`MONTHLY` for `month`, ...; periods AP2 has no word for use `ON_DEMAND`).
- `payment.execution_date` `{not_before, not_after}`: the validity window,
  ISO 8601 with a timezone, whole seconds, `not_after` inclusive; both
  between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z (the signed times are
  `uint64` Unix seconds, at most `MAX_TIME_S`).

A `p402` member names the budget (`budget_id`, `scope`, `period`) and may name
the tenant, an ERC-8004 agent identity and a description. Constraints and
top-level members that p402 does not enforce are refused rather than ignored,
so that nobody signs a limit believing it is enforced when it is not.
`payment.reference` (AP2's link to a checkout mandate) is accepted and ignored:
it links, it does not limit.

`content_hash` is keccak256 of the RFC 8785 (JCS) canonical bytes, the same
canonicalisation AP2 uses for its mandate hashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

import rfc8785

from p402.core.money import MoneyError, format_usd, parse_usd
from p402.core.periods import PERIODS
from p402.core.scopes import parse_scope
from p402.mandates.eip712 import MAX_TIME_S, keccak_hex
from p402.mandates.errors import INVALID_DOCUMENT, MandateRejected

__all__ = [
    "VCT_OPEN_PAYMENT",
    "FREQUENCY_OF_PERIOD",
    "AgentIdentity",
    "MandateTerms",
    "read_agent",
    "build_content",
    "read_content",
    "content_hash",
    "parse_instant",
    "format_instant",
]

VCT_OPEN_PAYMENT = "mandate.payment.open.1"
FREQUENCY_OF_PERIOD = {
    "hour": "ON_DEMAND", "day": "DAILY", "week": "WEEKLY", "month": "MONTHLY",
    "quarter": "QUARTERLY", "year": "ANNUALLY", "total": "ON_DEMAND", "request": "ON_DEMAND",
}
_TOP_LEVEL = frozenset({"vct", "constraints", "cnf", "iat", "exp", "risk_data", "p402"})
_P402_KEYS = frozenset({"budget_id", "scope", "period", "tenant", "agent", "description"})
_ENFORCED = ("payment.budget", "payment.agent_recurrence", "payment.execution_date")
_IGNORED = frozenset({"payment.reference"})
MAX_DESCRIPTION_CHARS = 1000
MAX_ID_CHARS = 128


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """An ERC-8004 agent a mandate is issued to (`agentRegistry`, `agentId`, `agentWallet`)."""

    agent_registry: str
    agent_id: str
    agent_wallet: str

    def as_dict(self) -> dict[str, str]:
        return {"agentRegistry": self.agent_registry, "agentId": self.agent_id, "agentWallet": self.agent_wallet}


@dataclass(frozen=True, slots=True)
class MandateTerms:
    """What a mandate's content authorises, read and validated."""

    budget_id: str
    scope: str
    period: str
    cap_nanos: int
    cap_usd: str  # exactly as written in payment.budget.max
    valid_from: int  # Unix seconds, inclusive
    valid_until: int  # Unix seconds, inclusive (not_after)
    tenant: str | None = None
    agent: AgentIdentity | None = None
    description: str = ""


def _bad(message: str, where: str) -> MandateRejected:
    return MandateRejected(INVALID_DOCUMENT, message, where)


def parse_instant(value: object, where: str) -> int:
    """An ISO 8601 instant with a timezone and whole seconds (or an aware datetime) -> Unix seconds."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise _bad(f"{value!r} is not an ISO 8601 date-time such as 2026-01-01T00:00:00Z", where) from None
    elif isinstance(value, datetime):
        moment = value
    else:
        raise _bad("must be an ISO 8601 date-time string such as 2026-01-01T00:00:00Z", where)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _bad(f"{value!r} has no timezone; write it with Z or an offset", where)
    if moment.microsecond:
        raise _bad(f"{value!r} has fractions of a second; mandates use whole seconds", where)
    # An offset can carry a time written in year 9999 past the last second a
    # datetime holds in UTC, and one written in 1970 before the epoch: both
    # bounds are checked on the Unix seconds, not on the text.
    unix_s = int(moment.timestamp())
    if unix_s < 0:
        raise _bad(f"{value!r} is before 1970-01-01T00:00:00Z, the earliest time p402 accepts", where)
    if unix_s > MAX_TIME_S:
        raise _bad(f"{value!r} is after 9999-12-31T23:59:59Z, the latest time p402 accepts", where)
    return unix_s


def format_instant(unix_s: int) -> str:
    """Unix seconds (0 to `MAX_TIME_S`, as every checked message holds) -> `YYYY-MM-DDTHH:MM:SSZ`."""
    return datetime.fromtimestamp(unix_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def content_hash(content: Mapping[str, Any]) -> str:
    """keccak256(JCS(content)) as 0x-hex."""
    try:
        return keccak_hex(rfc8785.dumps(content))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise _bad(f"cannot be canonicalised as JSON (RFC 8785): {exc}", "content") from None


def _text(value: object, where: str, limit: int = MAX_ID_CHARS) -> str:
    if not isinstance(value, str) or not value:
        raise _bad("must be a non-empty string", where)
    if len(value) > limit:
        raise _bad(f"is longer than {limit} characters", where)
    return value


def read_agent(value: object, where: str) -> AgentIdentity:
    """Validate an ERC-8004 agent identity {agentRegistry, agentId, agentWallet}."""
    if not isinstance(value, Mapping):
        raise _bad("must be an object {agentRegistry, agentId, agentWallet}", where)
    registry = _text(value.get("agentRegistry"), f"{where}.agentRegistry")
    parts = registry.split(":")
    if len(parts) != 3 or parts[0] != "eip155" or not parts[1].isdigit() or len(parts[2]) != 42:
        raise _bad(f"{registry!r} is not eip155:<chainId>:<registry address>", f"{where}.agentRegistry")
    agent_id = value.get("agentId")
    if isinstance(agent_id, int) and not isinstance(agent_id, bool):
        agent_id = str(agent_id)
    if not isinstance(agent_id, str) or not agent_id.isdigit():
        raise _bad("must be the agent's token id, a decimal string", f"{where}.agentId")
    wallet = _text(value.get("agentWallet"), f"{where}.agentWallet")
    if len(wallet) != 42 or not wallet.startswith("0x"):
        raise _bad(f"{wallet!r} is not an Ethereum address", f"{where}.agentWallet")
    return AgentIdentity(registry, agent_id, wallet)


def _read_p402(content: Mapping[str, Any]) -> dict[str, Any]:
    ext = content.get("p402")
    if not isinstance(ext, Mapping):
        raise _bad("is missing: an object {budget_id, scope, period} naming the budget", "content.p402")
    unknown = sorted(set(ext) - _P402_KEYS)
    if unknown:
        raise _bad(f"unknown member {unknown[0]!r}", "content.p402")
    out: dict[str, Any] = {"budget_id": _text(ext.get("budget_id"), "content.p402.budget_id")}
    scope = _text(ext.get("scope"), "content.p402.scope")
    try:
        parse_scope(scope)
    except ValueError as exc:
        raise _bad(str(exc), "content.p402.scope") from None
    out["scope"] = scope
    period = ext.get("period")
    if period not in PERIODS:
        raise _bad(f"must be one of {', '.join(PERIODS)}", "content.p402.period")
    out["period"] = period
    out["tenant"] = _text(ext["tenant"], "content.p402.tenant") if "tenant" in ext else None
    out["agent"] = read_agent(ext["agent"], "content.p402.agent") if "agent" in ext else None
    description = ext.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise _bad(f"must be a string of at most {MAX_DESCRIPTION_CHARS} characters", "content.p402.description")
    out["description"] = description
    return out


def _constraints(content: Mapping[str, Any]) -> dict[str, tuple[int, Mapping[str, Any]]]:
    items = content.get("constraints")
    if not isinstance(items, list) or not items:
        raise _bad("must be a non-empty array of AP2 constraints", "content.constraints")
    found: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for i, item in enumerate(items):
        where = f"content.constraints[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            raise _bad("must be an object with a string 'type'", where)
        kind = item["type"]
        if kind in _IGNORED:
            continue
        if kind not in _ENFORCED:
            raise _bad(f"p402 does not enforce {kind!r}; remove it (p402 enforces {', '.join(_ENFORCED)})", where)
        if kind in found:
            raise _bad(f"a second {kind!r} constraint; a mandate has exactly one", where)
        found[kind] = (i, item)
    for kind in _ENFORCED:
        if kind not in found:
            raise _bad(f"needs a {kind!r} constraint", "content.constraints")
    return found


def _read_cap(item: Mapping[str, Any], where: str) -> tuple[int, str]:
    if item.get("currency") != "USD":
        raise _bad(f"must be 'USD', not {item.get('currency')!r}", f"{where}.currency")
    raw = item.get("max")
    try:
        nanos = parse_usd(raw)
    except MoneyError as exc:
        raise _bad(str(exc), f"{where}.max") from None
    return nanos, raw if isinstance(raw, str) else str(raw)


def read_content(content: object) -> MandateTerms:
    """Validate mandate content and return its terms; errors name the field at fault."""
    if not isinstance(content, Mapping):
        raise _bad("must be an object (an AP2 open payment mandate)", "content")
    if content.get("vct") != VCT_OPEN_PAYMENT:
        raise _bad(f"must be {VCT_OPEN_PAYMENT!r}", "content.vct")
    unknown = sorted(set(content) - _TOP_LEVEL)
    if unknown:
        raise _bad(f"p402 does not enforce {unknown[0]!r}; remove it", f"content.{unknown[0]}")
    if not isinstance(content.get("cnf", {}), Mapping):
        raise _bad("must be an object (RFC 7800 confirmation claim)", "content.cnf")
    ext = _read_p402(content)
    found = _constraints(content)
    i, budget = found["payment.budget"]
    cap_nanos, cap_text = _read_cap(budget, f"content.constraints[{i}]")
    i, recurrence = found["payment.agent_recurrence"]
    wanted = FREQUENCY_OF_PERIOD[ext["period"]]
    if recurrence.get("frequency") != wanted:
        raise _bad(f"is {recurrence.get('frequency')!r} but period {ext['period']!r} needs {wanted!r}",
                   f"content.constraints[{i}].frequency")
    i, dates = found["payment.execution_date"]
    valid_from = parse_instant(dates.get("not_before"), f"content.constraints[{i}].not_before")
    valid_until = parse_instant(dates.get("not_after"), f"content.constraints[{i}].not_after")
    if valid_until < valid_from:
        raise _bad("is before not_before", f"content.constraints[{i}].not_after")
    if "exp" in content and content["exp"] != valid_until:
        raise _bad("must equal not_after as Unix seconds (or be left out)", "content.exp")
    return MandateTerms(ext["budget_id"], ext["scope"], ext["period"], cap_nanos, cap_text, valid_from,
                        valid_until, ext["tenant"], ext["agent"], ext["description"])


def build_content(terms: MandateTerms, issued_at: int) -> dict[str, Any]:
    """The AP2 open payment mandate content for `terms` (what `read_content` reads back)."""
    ext: dict[str, Any] = {"budget_id": terms.budget_id, "scope": terms.scope, "period": terms.period}
    if terms.tenant:
        ext["tenant"] = terms.tenant
    if terms.agent is not None:
        ext["agent"] = terms.agent.as_dict()
    if terms.description:
        ext["description"] = terms.description
    # Key binding (RFC 7800): the agent that may present the mandate, as a CAIP-10 account.
    cnf: dict[str, str] = {}
    if terms.agent is not None:
        chain = terms.agent.agent_registry.split(":")[1]
        cnf = {"kid": f"eip155:{chain}:{terms.agent.agent_wallet}"}
    return {
        "vct": VCT_OPEN_PAYMENT,
        "constraints": [
            {"type": "payment.budget", "max": terms.cap_usd or format_usd(terms.cap_nanos), "currency": "USD"},
            {"type": "payment.agent_recurrence", "frequency": FREQUENCY_OF_PERIOD[terms.period]},
            {"type": "payment.execution_date", "not_before": format_instant(terms.valid_from),
             "not_after": format_instant(terms.valid_until)},
        ],
        "cnf": cnf,
        "iat": issued_at,
        "exp": terms.valid_until,
        "p402": ext,
    }
