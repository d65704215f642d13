"""The Anthropic Messages route through the official Anthropic SDK, and the operational endpoints."""

from __future__ import annotations

import sqlite3
import urllib.request
from decimal import Decimal
from pathlib import Path

import anthropic
import openai
import orjson
import pytest

from tests.gatewaykit import config_of, counter_rows, gateway, org

MESSAGES = [{"role": "user", "content": "Hello, Claude"}]


def test_messages_admit_stream_and_settle(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path))) as gw:
        raw = gw.anthropic().messages.with_raw_response.create(model="claude-sonnet-4-6", max_tokens=20,
                                                               messages=MESSAGES, system="Be brief.")
        message = raw.parse()
        assert message.content[0].text and message.usage.output_tokens == 20
        assert message.stop_reason == "max_tokens"
        cost = (Decimal(message.usage.input_tokens) * 3 + Decimal(20) * 15) / 10**6
        assert Decimal(raw.headers["X-P402-Cost-Usd"]) == cost
        with gw.anthropic().messages.stream(model="claude-sonnet-4-6", max_tokens=8, messages=MESSAGES) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text and final.usage.output_tokens == 8
        with sqlite3.connect(tmp_path / "p402.db") as db:
            settles = [orjson.loads(r[0]) for r in db.execute("SELECT body FROM ledger WHERE kind='settle'")]
        assert sum(r[4] for r in counter_rows(tmp_path / "p402.db")) == 0
        assert [s["output_tokens"] for s in settles] == [20, 8]


def test_denial_comes_in_anthropics_envelope_with_the_p402_object(tmp_path: Path) -> None:
    raw = org(tmp_path, [{"id": "tiny", "scope": "department:eng", "cap_usd": "0.0001", "period": "day"}],
              policies=[{"scope": "department:sales", "deny_categories": ["premium"]}])
    with gateway(config_of(raw)) as gw:
        with pytest.raises(anthropic.APIStatusError) as err:
            gw.anthropic("alice").messages.create(model="claude-sonnet-4-6", max_tokens=1000, messages=MESSAGES)
        e = err.value
        assert e.status_code == 402 and e.response.headers["X-P402-Deny-Code"] == "BUDGET_EXCEEDED"
        body = e.body
        assert body["type"] == "error" and body["error"]["type"] == "billing_error"
        assert body["error"]["p402"]["deny_code"] == "BUDGET_EXCEEDED"
        assert body["error"]["p402"]["recovery"]["action"] == "reduce_max_tokens"
        with pytest.raises(anthropic.PermissionDeniedError) as err2:
            gw.anthropic("carol").messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES)
        assert err2.value.body["error"]["p402"]["deny_code"] == "CATEGORY_DENIED"
        with pytest.raises(anthropic.AuthenticationError):
            gw.anthropic("sk-wrong").messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES)
        with pytest.raises(anthropic.BadRequestError) as err3:
            gw.anthropic("carol").messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[])
        assert "messages" in err3.value.body["error"]["message"]


def test_health_readiness_and_metrics(tmp_path: Path) -> None:
    raw = org(tmp_path, policies=[{"scope": "department:sales", "deny_categories": ["premium"]}])
    with gateway(config_of(raw)) as gw:
        raw = gw.openai("alice").chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        cost = raw.headers["X-P402-Cost-Usd"]
        with pytest.raises(openai.PermissionDeniedError):
            gw.openai("carol").chat.completions.create(model="gpt-4o", messages=MESSAGES)
        with pytest.raises(openai.BadRequestError):  # refused at the edge, before any decision: still counted
            gw.openai("alice").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=-1)
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(gw.base + path) as r:
                assert r.status == 200
        with urllib.request.urlopen(gw.base + "/metrics") as r:
            text = r.read().decode()
        assert 'p402_decisions_total{deny_code="",outcome="allow"} 1.0' in text
        assert 'p402_decisions_total{deny_code="CATEGORY_DENIED",outcome="deny"} 1.0' in text
        assert 'p402_requests_total{route="chat",status="403"} 1.0' in text
        assert 'p402_requests_total{route="chat",status="400"} 1.0' in text
        spend = next(line for line in text.splitlines() if line.startswith('p402_spend_usd_total{department="eng"}'))
        assert float(spend.split()[-1]) == pytest.approx(float(cost))
        assert "p402_decision_seconds_bucket" in text


def test_wrong_methods_get_a_405_in_each_routes_own_error_format(tmp_path: Path) -> None:
    import urllib.error
    with gateway(config_of(org(tmp_path))) as gw:
        for method, path, kind in (("POST", "/v1/models", "openai"), ("GET", "/v1/messages", "anthropic"),
                                   ("GET", "/v1/chat/completions", "openai")):
            req = urllib.request.Request(gw.base + path, data=b"{}" if method == "POST" else None, method=method)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req)
            body = orjson.loads(err.value.read())
            err.value.close()
            assert err.value.code == 405, path
            if kind == "anthropic":
                assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
            else:
                assert body["error"]["code"] == "method_not_allowed" and path in body["error"]["message"]
