"""Signed mandates and overrides, end to end: the owner's signature, and only it, changes what may be spent."""

from __future__ import annotations

import sqlite3
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from p402.mandates import new_identity, sign_mandate, sign_override, sign_revocation
from tests.gatewaykit import ADMIN_TOKEN, FINANCE_TOKEN, config_of, gateway, org

PROMPT = [{"role": "user", "content": "pay invoice 42"}]
AGENT = {"X-P402-Workflow": "ap-agent"}


def post(base: str, path: str, body: dict[str, Any], token: str = ADMIN_TOKEN) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(base + path, data=orjson.dumps(body), method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, orjson.loads(e.read())


def ask(gw: Any, max_tokens: int = 50, mandate: str | None = None) -> Any:
    headers = dict(AGENT, **({"X-P402-Mandate": mandate} if mandate else {}))
    return gw.openai("carol").chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=max_tokens,
                                                      extra_headers=headers)


def deny_code(gw: Any, **kw: Any) -> str:
    with pytest.raises(openai.APIStatusError) as err:
        ask(gw, **kw)
    return str(err.value.body["p402"]["deny_code"])


def test_mandate_override_and_revocation_flow(tmp_path: Path) -> None:
    owner_key, owner, _ = new_identity("ap-owner")
    stranger_key, _, _ = new_identity("stranger")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    budgets = [{"id": "ap-agent", "scope": "workflow:ap-agent", "cap_usd": "100", "period": "month",
                "requires_mandate": True, "owner": owner}]
    with gateway(config_of(org(tmp_path, budgets))) as gw:
        assert deny_code(gw) == "MANDATE_INACTIVE"
        spec = {"budget": "ap-agent", "scope": "workflow:ap-agent", "cap_usd": "0.0001", "period": "month",
                "valid_until": (now + timedelta(days=30)).isoformat()}
        forged = sign_mandate(spec, stranger_key)
        status, body = post(gw.base, "/admin/v1/mandates", forged)
        assert status == 403 and body["error"]["code"] == "SIGNATURE_INVALID"
        assert deny_code(gw) == "MANDATE_INACTIVE"

        mandate = sign_mandate(spec, owner_key)
        status, body = post(gw.base, "/admin/v1/mandates", mandate)
        assert status == 201 and body["signer"] == owner.lower()
        digest = body["digest"]
        assert ask(gw).choices  # admitted under the mandate
        assert ask(gw, mandate=digest.upper()).choices  # presenting the digest works in any case

        # The mandate's cap ($0.0001) binds, not the configured $100: the owner signed for less.
        assert deny_code(gw, max_tokens=1000) == "BUDGET_EXCEEDED"
        window_end = (now + timedelta(hours=1)).isoformat()
        status, _ = post(gw.base, "/admin/v1/overrides",
                         sign_override({"budget": "ap-agent", "extra_usd": "1", "window_end": window_end}, stranger_key),
                         FINANCE_TOKEN)
        assert status == 403  # nobody but the owner can raise a budget
        assert deny_code(gw, max_tokens=1000) == "BUDGET_EXCEEDED"
        status, body = post(gw.base, "/admin/v1/overrides",
                            sign_override({"budget": "ap-agent", "extra_usd": "1", "window_end": window_end}, owner_key),
                            FINANCE_TOKEN)
        assert status == 201 and body["extra_usd"] == "1.00"
        assert ask(gw, max_tokens=1000).choices  # the signed raise took effect at once

        revocation = sign_revocation(digest, "agent retired", owner_key)
        status, _ = post(gw.base, f"/admin/v1/mandates/{'0x' + '0' * 64}/revoke", revocation)
        assert status == 400  # the path must name the revoked mandate
        status, _ = post(gw.base, f"/admin/v1/mandates/{digest}/revoke", revocation)
        assert status == 201
        assert deny_code(gw) == "MANDATE_INACTIVE"

        with sqlite3.connect(tmp_path / "p402.db") as db:
            policy_rows = [orjson.loads(r[0]) for r in db.execute("SELECT body FROM ledger WHERE kind='policy'")]
        signed = [r for r in policy_rows if r.get("signer")]
        assert [r["object"] for r in signed] == ["mandate", "override", "revocation"]
        assert all(r["signer"] == owner.lower() for r in signed)


def test_a_mandate_signed_by_a_former_owner_is_signature_invalid(tmp_path: Path) -> None:
    old_key, old_owner, _ = new_identity("old")
    _, new_owner, _ = new_identity("new")
    budget = {"id": "ap-agent", "scope": "workflow:ap-agent", "cap_usd": "100", "period": "month",
              "requires_mandate": True, "owner": old_owner}
    raw = org(tmp_path, [budget])
    with gateway(config_of(raw)) as gw:
        spec = {"budget": "ap-agent", "scope": "workflow:ap-agent", "cap_usd": "50", "period": "month",
                "valid_until": (datetime.now(timezone.utc) + timedelta(days=1)).replace(microsecond=0).isoformat()}
        assert post(gw.base, "/admin/v1/mandates", sign_mandate(spec, old_key))[0] == 201
        assert ask(gw).choices
    raw["budgets"] = [{**budget, "owner": new_owner}]  # ownership passes to someone else
    with gateway(config_of(raw)) as gw:
        assert deny_code(gw) == "SIGNATURE_INVALID"
