"""Ledger rows in plain language: what was asked, which budget bound, why, what to do next.

`explain(body)` turns one ledger body into a few sentences a finance person or a
developer can act on. It only restates what the row records; it never looks
anything up, so the explanation of an old row stays true to that row.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["explain"]

_WHO_ORDER = ("department", "project", "customer", "feature", "workflow", "key")
_SELF_EXPLAINING = ("reduce_max_tokens", "use_allowed_model", "add_attribution")


def _duration(seconds: int) -> str:
    """'3 days 4 hours', '25 minutes', 'a few seconds' — two units at most."""
    if seconds < 60:
        return "a few seconds" if seconds > 0 else "now"
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(parts[:2])


def _who(body: Mapping[str, Any]) -> str:
    lead, lead_kind = "an unnamed caller", ""
    for kind in ("employee", "workflow", "key"):
        if body.get(kind):
            lead, lead_kind = f"{kind} {body[kind]}", kind
            break
    extra = [f"{k} {body[k]}" for k in _WHO_ORDER if body.get(k) and k != lead_kind]
    if body.get("tenant"):
        extra.append(f"tenant {body['tenant']}")
    return f"{lead} ({', '.join(extra)})" if extra else lead


def _usd(value: Any) -> str:
    return f"${value}" if value not in (None, "") else "an unknown amount"


def _asked(body: Mapping[str, Any]) -> str:
    model = body.get("model") or "an unknown model"
    via = f" via {body['provider']}" if body.get("provider") else ""
    text = f"{_who(body)} asked for {model}{via}"
    bounds = []
    if isinstance(body.get("input_tokens"), int):
        bounds.append(f"at most {body['input_tokens']} input tokens")
    if isinstance(body.get("max_tokens"), int):
        who_set = " (set by the gateway: the most the budget could afford)" if body.get("max_tokens_set") else ""
        bounds.append(f"max_tokens {body['max_tokens']}{who_set}")
    if bounds:
        text += ", " + " and ".join(bounds)
    if body.get("estimate_usd") not in (None, ""):
        text += f"; estimated cost {_usd(body['estimate_usd'])}"
    return text[0].upper() + text[1:] + "."


def _binding(body: Mapping[str, Any]) -> str | None:
    b = body.get("binding")
    if not isinstance(b, Mapping):
        return None
    # `binding_view` (p402.pipeline.records) names the budget `id`, as the deny body does.
    return (f"The binding budget was {b.get('id', '?')} on {b.get('scope', '?')}: cap {_usd(b.get('cap_usd'))}, "
            f"settled {_usd(b.get('settled_usd'))}, reserved {_usd(b.get('reserved_usd'))}, "
            f"remaining {_usd(b.get('remaining_usd'))}.")


def _next_step(recovery: Mapping[str, Any]) -> str:
    action = recovery.get("action")
    owner = f" ({recovery['owner']})" if recovery.get("owner") else ""
    if action == "reduce_max_tokens" and recovery.get("max_tokens") is not None:
        text = f"retry with max_tokens {recovery['max_tokens']} or fewer"
    elif action == "wait_for_reset":
        wait = recovery.get("retry_after_s")
        text = "wait for the budget to reset" + (f", in {_duration(int(wait))}" if isinstance(wait, int) else "")
    elif action == "request_override":
        text = f"ask the budget owner{owner} for a signed override"
    elif action == "use_allowed_model":
        models = recovery.get("allowed_models") or []
        text = "use an allowed model" + (f": {', '.join(map(str, models))}" if models else "")
    elif action == "renew_mandate":
        text = f"the budget owner{owner} must sign a current mandate"
    elif action == "resign_mandate":
        text = f"the budget owner{owner} must sign the mandate again; the current signature does not verify"
    elif action == "add_attribution":
        text = f"send the {recovery.get('header') or 'missing attribution'} header"
    elif action == "add_price":
        text = "add a price for this model to the configuration"
    else:
        text = str(recovery.get("detail") or action or "no recovery was recorded")
    detail = recovery.get("detail")
    # These actions are fully said by their structured fields; the detail would only repeat them.
    if detail and action not in _SELF_EXPLAINING and detail not in text:
        text += f" ({detail})"
    return "What to do next: " + text + "."


def _decision(body: Mapping[str, Any]) -> list[str]:
    lines = [_asked(body)]
    binding = _binding(body)
    if body.get("outcome") == "deny":
        lines.append(f"Denied with {body.get('deny_code') or 'no code'}: {body.get('reason') or 'no reason recorded'}.")
        if binding:
            lines.append(binding)
        if isinstance(body.get("recovery"), Mapping):
            lines.append(_next_step(body["recovery"]))
        return lines
    lines.append(f"Allowed ({body.get('reason') or 'within budget'}); the estimate was reserved until the call settles.")
    if binding:
        lines.append(binding)
    shadows = [f[len("shadow:"):] for f in body.get("flags") or [] if isinstance(f, str) and f.startswith("shadow:")]
    if shadows:
        lines.append(f"Shadow budget(s) {', '.join(shadows)} would have denied it; shadow budgets only log.")
    return lines


def _settlement(body: Mapping[str, Any]) -> list[str]:
    kind, flags = body.get("kind"), body.get("flags") or []
    ref = f" of decision {body['ref']}" if body.get("ref") else ""
    tokens = ""
    if isinstance(body.get("input_tokens"), int) or isinstance(body.get("output_tokens"), int):
        tokens = f" ({body.get('input_tokens', 0)} input, {body.get('output_tokens', 0)} output tokens)"
    if kind == "late_settle":
        lines = [f"The call{ref} reported back after its lease had run out, when its reservation had already been "
                 f"settled in full as orphaned; it actually cost {_usd(body.get('cost_usd'))}{tokens}. This row "
                 f"records that cost beside the orphaned settlement; it does not change any balance."]
    elif kind == "expire" or "orphaned" in flags:
        lines = [f"The call{ref} never reported back; when its lease ran out its reservation was settled in full "
                 f"at {_usd(body.get('cost_usd'))} and flagged orphaned."]
    elif kind == "release":
        lines = [f"The reservation{ref} was released: the call was billed {_usd(body.get('cost_usd') or '0')}{tokens}."]
    else:
        lines = [f"The call{ref} settled at its actual cost {_usd(body.get('cost_usd'))}{tokens}."]
    if body.get("estimate_usd") not in (None, ""):
        lines.append(f"It had reserved {_usd(body['estimate_usd'])}.")
    if "overrun" in flags:
        lines.append("The actual cost exceeded the estimate (overrun): the provider billed more than the bound.")
    return lines


def explain(body: Mapping[str, Any]) -> str:
    """A plain-language account of one ledger row (any kind)."""
    kind = body.get("kind")
    name = str(kind or "row").replace("_", " ").capitalize()
    head = f"{name} {body.get('event_id', '')} at {body.get('ts', 'an unknown time')}"
    if body.get("policy_version") is not None:
        head += f", under policy version {body['policy_version']}"
    lines = [head + "."]
    if kind == "decision":
        lines += _decision(body)
    elif kind in ("settle", "release", "expire", "late_settle"):
        lines += _settlement(body)
    elif kind == "checkpoint":
        lines.append(f"Seals ledger rows 1..{body.get('covered_seq')} under Merkle root {body.get('root')}, "
                     f"signed by {body.get('key_id')}; `p402 ledger verify` checks it.")
    elif kind == "policy":
        lines.append(f"Policy change: {body.get('reason') or 'no description recorded'}.")
    else:
        lines.append(str(body.get("reason") or "No further detail recorded."))
    return "\n".join(lines)
