"""What the CLI needs: turn a small spec into a signed document, and verify a document.

`p402 mandate sign`, `p402 override sign` and `p402 mandate verify` are thin
shells over these functions. A spec is a mapping (the CLI reads it from YAML
or JSON; YAML date-times arrive as aware datetimes, which are accepted)::

    # mandate spec                          # override spec
    budget: eng-month                        budget: eng-month
    scope: department:eng                    extra_usd: "250.00"
    cap_usd: "5000.00"                       window_start: 2026-03-01T00:00:00Z   # default: now
    period: month                            window_end: 2026-03-08T00:00:00Z
    valid_from: 2026-01-01T00:00:00Z         # default: now
    valid_until: 2026-12-31T23:59:59Z
    previous: 0x...                          # the revision this one replaces; default none
    tenant: acme                             # optional
    description: Eng LLM spend, 2026         # optional
    agent: {agentRegistry: "eip155:1:0x8004...", agentId: "22", agentWallet: "0x..."}   # optional

Signing without a key file (a hardware wallet, a browser wallet, another
tool): `unsigned_mandate` / `unsigned_override` / `unsigned_revocation` return
the content and the EIP-712 typed data to hand to `eth_signTypedData_v4`;
`assemble` turns content, typed data and the returned signature into a
document, checking the signature on the way.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any, Mapping

from p402.core.money import MoneyError, format_usd, parse_usd
from p402.core.periods import PERIODS
from p402.errors import ConfigError
from p402.mandates.content import (MandateTerms, build_content, content_hash, format_instant,
                                   parse_instant, read_agent, read_content)
from p402.mandates.documents import derived_content, make_document, verify_document
from p402.mandates.eip712 import (DEFAULT_CHAIN_ID, ZERO_DIGEST, check_message, recover_signer, sign_typed,
                                  typed_data)
from p402.mandates.errors import MandateRejected
from p402.mandates.identity import address_of

__all__ = [
    "Unsigned",
    "unsigned_mandate",
    "unsigned_override",
    "unsigned_revocation",
    "sign",
    "assemble",
    "sign_mandate",
    "sign_override",
    "sign_revocation",
    "verify",
]

_MANDATE_KEYS = frozenset({"budget", "scope", "cap_usd", "period", "valid_from", "valid_until", "previous",
                           "nonce", "tenant", "description", "agent"})
_OVERRIDE_KEYS = frozenset({"budget", "extra_usd", "window_start", "window_end", "nonce"})
Unsigned = tuple[dict[str, Any], dict[str, Any]]  # (content, typed data)


def _now_s(now: datetime | None) -> int:
    return int((now or datetime.now(timezone.utc)).timestamp())


def _check_keys(spec: Mapping[str, Any], allowed: frozenset[str], required: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ConfigError(f"{what} spec: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    for key in required:
        if spec.get(key) in (None, ""):
            raise ConfigError(f"{what} spec: {key} is required")


def _usd(value: object, key: str, what: str) -> tuple[int, str]:
    try:
        nanos = parse_usd(value)
    except MoneyError as exc:
        raise ConfigError(f"{what} spec: {key}: {exc}") from None
    return nanos, value if isinstance(value, str) else format_usd(nanos)


def _nonce(spec: Mapping[str, Any]) -> int:
    value = spec.get("nonce")
    if value is None:
        # 52 bits: distinct enough to tell two otherwise equal documents apart,
        # and below 2**53 so JavaScript tools read it exactly.
        return secrets.randbits(52)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError("spec: nonce must be a non-negative integer")
    return value


def unsigned_mandate(spec: Mapping[str, Any], *, chain_id: int = DEFAULT_CHAIN_ID,
                     now: datetime | None = None) -> Unsigned:
    """A mandate spec -> (AP2 content, `BudgetMandate` typed data), ready to sign."""
    _check_keys(spec, _MANDATE_KEYS, ("budget", "scope", "cap_usd", "period", "valid_until"), "mandate")
    if spec["period"] not in PERIODS:
        raise ConfigError(f"mandate spec: period must be one of {', '.join(PERIODS)}")
    issued = _now_s(now)
    cap_nanos, cap_text = _usd(spec["cap_usd"], "cap_usd", "mandate")
    agent = spec.get("agent")
    terms = MandateTerms(
        budget_id=str(spec["budget"]), scope=str(spec["scope"]), period=spec["period"], cap_nanos=cap_nanos,
        cap_usd=cap_text,
        valid_from=parse_instant(spec["valid_from"], "valid_from") if spec.get("valid_from") else issued,
        valid_until=parse_instant(spec["valid_until"], "valid_until"),
        tenant=str(spec["tenant"]) if spec.get("tenant") else None,
        agent=read_agent(agent, "agent") if agent is not None else None,
        description=str(spec.get("description") or ""))
    content = build_content(terms, issued)
    read_content(content)  # the same validation a verifier applies, so a bad spec fails here, by field
    previous = spec.get("previous") or ZERO_DIGEST
    message = check_message("BudgetMandate", {
        "budgetId": terms.budget_id, "scope": terms.scope, "capUsd": cap_text, "period": terms.period,
        "validFrom": terms.valid_from, "validUntil": terms.valid_until, "contentHash": content_hash(content),
        "previous": previous, "nonce": _nonce(spec)}, "spec")
    return content, typed_data("BudgetMandate", message, chain_id)


def unsigned_override(spec: Mapping[str, Any], *, chain_id: int = DEFAULT_CHAIN_ID,
                      now: datetime | None = None) -> Unsigned:
    """An override spec -> (readable content, `BudgetOverride` typed data)."""
    _check_keys(spec, _OVERRIDE_KEYS, ("budget", "extra_usd", "window_end"), "override")
    extra_nanos, extra_text = _usd(spec["extra_usd"], "extra_usd", "override")
    if extra_nanos <= 0:
        raise ConfigError("override spec: extra_usd must be more than zero")
    start = parse_instant(spec["window_start"], "window_start") if spec.get("window_start") else _now_s(now)
    end = parse_instant(spec["window_end"], "window_end")
    if end <= start:
        raise ConfigError("override spec: window_end must be after window_start")
    message = check_message("BudgetOverride", {"budgetId": str(spec["budget"]), "extraUsd": extra_text,
                                               "windowStart": start, "windowEnd": end, "nonce": _nonce(spec)}, "spec")
    return derived_content("BudgetOverride", message), typed_data("BudgetOverride", message, chain_id)


def unsigned_revocation(mandate_digest: str, reason: str, *, chain_id: int = DEFAULT_CHAIN_ID,
                        now: datetime | None = None) -> Unsigned:
    """(readable content, `MandateRevocation` typed data) withdrawing the mandate `mandate_digest`."""
    message = check_message("MandateRevocation", {"mandate": mandate_digest, "reason": reason, "ts": _now_s(now)},
                            "revocation")
    return derived_content("MandateRevocation", message), typed_data("MandateRevocation", message, chain_id)


def assemble(content: Mapping[str, Any], typed: Mapping[str, Any], signature: str) -> dict[str, Any]:
    """Build a document from content, its typed data and a signature made elsewhere; verify it.

    The signer is recovered from the signature, so a signature by the wrong key
    yields a document signed by that key, which the book then refuses for not
    being the budget's owner.
    """
    primary, chain_id = str(typed["primaryType"]), int(typed["domain"]["chainId"])
    signer, digest = recover_signer(primary, typed["message"], signature, chain_id)
    document = make_document(content, primary, typed["message"], signer, signature, digest, chain_id)
    verify_document(document, chain_id)
    return document


def sign(unsigned: Unsigned, private_key: str) -> dict[str, Any]:
    """Sign (content, typed data) with a private key; return the document."""
    content, typed = unsigned
    primary, chain_id = str(typed["primaryType"]), int(typed["domain"]["chainId"])
    signature, digest = sign_typed(primary, typed["message"], private_key, chain_id)
    return make_document(content, primary, typed["message"], address_of(private_key), signature, digest, chain_id)


def sign_mandate(spec: Mapping[str, Any], private_key: str, *, chain_id: int = DEFAULT_CHAIN_ID,
                 now: datetime | None = None) -> dict[str, Any]:
    """`p402 mandate sign`: a mandate spec and the owner's key (see `identity.load_key`) -> document."""
    return sign(unsigned_mandate(spec, chain_id=chain_id, now=now), private_key)


def sign_override(spec: Mapping[str, Any], private_key: str, *, chain_id: int = DEFAULT_CHAIN_ID,
                  now: datetime | None = None) -> dict[str, Any]:
    """`p402 override sign`: an override spec and the owner's key -> document."""
    return sign(unsigned_override(spec, chain_id=chain_id, now=now), private_key)


def sign_revocation(mandate_digest: str, reason: str, private_key: str, *, chain_id: int = DEFAULT_CHAIN_ID,
                    now: datetime | None = None) -> dict[str, Any]:
    """A signed revocation of a mandate (for `POST /admin/v1/mandates/{digest}/revoke`)."""
    return sign(unsigned_revocation(mandate_digest, reason, chain_id=chain_id, now=now), private_key)


def verify(document: bytes | str | Mapping[str, Any], *, chain_id: int = DEFAULT_CHAIN_ID,
           owner: str | None = None, now: datetime | None = None) -> tuple[bool, str]:
    """`p402 mandate verify`: (ok, one-line reason). Never raises for a bad document.

    ok means the signature verifies, the signer is `owner` (when given) and,
    when `now` is given, the document has not expired. A mandate that is not
    valid *yet* is ok (it is scheduled); the reason says when it starts.
    """
    try:
        v = verify_document(document, chain_id)
    except MandateRejected as exc:
        return False, f"{exc.code}: {exc}"
    if owner is not None and v.signer != owner.lower():
        return False, f"SIGNATURE_INVALID: signed by {v.signer}, not by the budget owner {owner.lower()}"
    m = v.message
    if v.terms is not None:
        t = v.terms
        what = (f"mandate {v.digest} for budget {t.budget_id} ({t.scope}, ${format_usd(t.cap_nanos)} per {t.period}), "
                f"valid {format_instant(t.valid_from)} to {format_instant(t.valid_until)}")
        start, end = t.valid_from, t.valid_until + 1  # not_after is inclusive
    elif v.kind == "override":
        what = (f"override {v.digest} of budget {m['budgetId']}: +${m['extraUsd']} from "
                f"{format_instant(m['windowStart'])} to {format_instant(m['windowEnd'])}")
        start, end = m["windowStart"], m["windowEnd"]
    else:
        return True, f"revocation {v.digest} of mandate {m['mandate']} signed by {v.signer}"
    if now is not None:
        at = int(now.timestamp())
        if at >= end:
            return False, f"MANDATE_INACTIVE: {what} has expired"
        if at < start:
            return True, f"{what}, signed by {v.signer}; not valid yet"
    return True, f"{what}, signed by {v.signer}"
