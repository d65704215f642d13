"""The gateway through the official OpenAI SDK: admits, denials, headers, streaming settlement."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import openai
import orjson
import pytest

from tests.gatewaykit import ADMIN_TOKEN, SECRETS, config_of, counter_rows, gateway, org, wait_until

PROMPT = [{"role": "user", "content": "Summarise the quarterly cloud bill in one line."}]




def ledger(db: str) -> list[dict]:
    with sqlite3.connect(db) as c:
        return [orjson.loads(r[0]) for r in c.execute("SELECT body FROM ledger ORDER BY seq")]


def counters(db: str) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for budget, _, _, settled, reserved in counter_rows(db):
        s, r = out.get(budget, (0, 0))
        out[budget] = (s + settled, r + reserved)
    return out


def usd(text: str) -> Decimal:
    return Decimal(text)


def test_admit_settles_the_exact_cost_and_reports_it_in_headers(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path))) as gw:
        raw = gw.openai().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT)
        completion = raw.parse()
        usage = completion.usage
        assert usage is not None and usage.completion_tokens == 32
        # 0.15 $/Mtok in, 0.60 $/Mtok out, exactly.
        expected = (Decimal(usage.prompt_tokens) * Decimal("0.15") + 32 * Decimal("0.60")) / 1_000_000
        assert usd(raw.headers["X-P402-Cost-Usd"]) == expected
        # No max_tokens was sent: the gateway set the model's limit and said so.
        assert raw.headers["X-P402-Max-Tokens"] == "4096"
        assert usd(raw.headers["X-P402-Estimate-Usd"]) >= expected
        assert float(raw.headers["X-P402-Overhead-Ms"]) >= 0
        # The only budget is acme's $1000 month, and this is its first request: after the reservation.
        assert usd(raw.headers["X-P402-Budget-Remaining-Usd"]) == Decimal("1000") - usd(raw.headers["X-P402-Estimate-Usd"])
        event_id = raw.headers["X-P402-Event-Id"]
        rows = [r for r in ledger(gw.db_path) if r.get("event_id") == event_id]
        assert [r["kind"] for r in rows] == ["decision", "settle"]
        assert rows[0]["outcome"] == "allow" and rows[0]["department"] == "eng" and rows[0]["employee"] == "alice"
        assert usd(rows[1]["cost_usd"]) == expected
        assert counters(gw.db_path)["acme-month"] == (int(expected * 10**9), 0)


def test_streaming_settles_from_the_usage_report_and_hides_it_unless_asked(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path))) as gw:
        chunks = list(gw.openai().chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True,
                                                              max_tokens=10))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text and all(c.usage is None for c in chunks)
        with_usage = list(gw.openai().chat.completions.create(
            model="gpt-4o-mini", messages=PROMPT, stream=True, max_tokens=10, stream_options={"include_usage": True}))
        assert with_usage[-1].usage is not None and with_usage[-1].usage.completion_tokens == 10
        settles = [r for r in ledger(gw.db_path) if r["kind"] == "settle"]
        assert len(settles) == 2 and all(r["output_tokens"] == 10 for r in settles)
        settled, reserved = counters(gw.db_path)["acme-month"]
        assert reserved == 0
        assert settled == sum(int(usd(r["cost_usd"]) * 10**9) for r in settles)


def _priced(prompt_tokens: int, completion_tokens: int) -> Decimal:
    """gpt-4o-mini in the test organisation: 0.15 $/Mtok in, 0.60 $/Mtok out, exactly."""
    return (prompt_tokens * Decimal("0.15") + completion_tokens * Decimal("0.60")) / 1_000_000


def test_n_choices_are_answered_and_billed_for_all_of_their_output(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path))) as gw:
        raw = gw.openai().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT, n=3,
                                                                    max_tokens=4)
        completion = raw.parse()
        assert [c.index for c in completion.choices] == [0, 1, 2]
        assert all(c.message.content and c.finish_reason == "length" for c in completion.choices)
        usage = completion.usage
        assert usage is not None and usage.completion_tokens == 12  # 3 choices of 4 tokens, as OpenAI reports
        assert usage.total_tokens == usage.prompt_tokens + 12
        [settle] = [r for r in ledger(gw.db_path) if r["kind"] == "settle"
                    and r["event_id"] == raw.headers["X-P402-Event-Id"]]
        assert (settle["output_tokens"], usd(settle["cost_usd"])) == (12, _priced(usage.prompt_tokens, 12))
        assert usd(raw.headers["X-P402-Cost-Usd"]) == _priced(usage.prompt_tokens, 12)


def test_n_streamed_choices_interleave_and_the_usage_chunk_counts_them_all(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path))) as gw:
        stream = gw.openai().chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=PROMPT, n=3, max_tokens=4, stream=True,
            stream_options={"include_usage": True})
        event_id = stream.headers["X-P402-Event-Id"]
        chunks = list(stream.parse())
        content = [c for c in chunks if c.choices and c.choices[0].delta.content]
        assert all(len(c.choices) == 1 for c in chunks if c.choices)
        assert [c.choices[0].index for c in content] == [0, 1, 2] * 4  # the choices take turns
        texts = {i: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == i)
                 for i in range(3)}
        assert texts[0] and texts[0] == texts[1] == texts[2]
        finished = sorted(c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason)
        assert finished == [0, 1, 2]
        usage = chunks[-1].usage
        assert usage is not None and not chunks[-1].choices and usage.completion_tokens == 12
        wait_until(lambda: any(r["kind"] == "settle" and r["event_id"] == event_id for r in ledger(gw.db_path)))
        [settle] = [r for r in ledger(gw.db_path) if r["kind"] == "settle" and r["event_id"] == event_id]
        assert (settle["output_tokens"], usd(settle["cost_usd"])) == (12, _priced(usage.prompt_tokens, 12))


def test_budget_exceeded_names_the_binding_budget_and_a_max_tokens_that_fits(tmp_path: Path) -> None:
    budgets = [{"id": "acme-month", "scope": "tenant:acme", "cap_usd": "1000", "period": "month"},
               {"id": "eng-month", "scope": "department:eng", "cap_usd": "0.001", "period": "month"}]
    with gateway(config_of(org(tmp_path, budgets))) as gw:
        with pytest.raises(openai.APIStatusError) as err:
            gw.openai().chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=5000)
        e = err.value
        assert e.status_code == 402 and e.code == "BUDGET_EXCEEDED"
        assert e.response.headers["X-P402-Deny-Code"] == "BUDGET_EXCEEDED"
        body = e.body
        assert isinstance(body, dict) and body["type"] == "p402_denied"
        p = body["p402"]
        assert p["deny_code"] == "BUDGET_EXCEEDED" and p["scope"] == "department:eng"
        assert p["event_id"] == e.response.headers["X-P402-Event-Id"]
        assert p["budget"]["id"] == "eng-month" and p["budget"]["cap_usd"] == "0.001"
        assert p["budget"]["period"] == "month" and p["budget"]["resets_at"].endswith("Z")
        assert p["recovery"]["action"] == "reduce_max_tokens" and p["recovery"]["owner"].startswith("0x")
        assert "department:eng monthly budget would be exceeded" in body["message"]
        fit = p["recovery"]["max_tokens"]
        # The advice is exact: the suggested max_tokens is admitted, one more is not.
        with pytest.raises(openai.APIStatusError):
            gw.openai().chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=fit + 1)
        ok = gw.openai().chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=fit)
        assert ok.choices[0].message.content
        assert [r["outcome"] for r in ledger(gw.db_path) if r["kind"] == "decision"] == ["deny", "deny", "allow"]


def test_exhausted_budget_says_when_it_resets(tmp_path: Path) -> None:
    budgets = [{"id": "bot-hourly", "scope": "workflow:support-bot", "cap_usd": "0.000001", "period": "hour"}]
    with gateway(config_of(org(tmp_path, budgets))) as gw:
        with pytest.raises(openai.APIStatusError) as err:
            gw.openai("bot").chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=1)
        e = err.value
        assert e.status_code == 402
        retry = int(e.response.headers["Retry-After"])
        assert 0 < retry <= 3600
        assert e.body["p402"]["recovery"] == {**e.body["p402"]["recovery"], "action": "wait_for_reset",
                                              "retry_after_s": retry}


def test_gateway_sets_the_largest_affordable_max_tokens(tmp_path: Path) -> None:
    budgets = [{"id": "eng-month", "scope": "department:eng", "cap_usd": "0.0001", "period": "month"}]
    with gateway(config_of(org(tmp_path, budgets))) as gw:
        raw = gw.openai().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT)
        granted = int(raw.headers["X-P402-Max-Tokens"])
        assert 0 < granted < 4096
        assert usd(raw.headers["X-P402-Estimate-Usd"]) <= Decimal("0.0001")
    # The largest: on a fresh budget the same request fits with max_tokens=granted, not granted + 1.
    (tmp_path / "again").mkdir()
    with gateway(config_of(org(tmp_path / "again", budgets))) as gw:
        with pytest.raises(openai.APIStatusError) as err:
            gw.openai().chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=granted + 1)
        assert err.value.status_code == 402 and err.value.body["p402"]["recovery"]["max_tokens"] == granted
        assert gw.openai().chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=granted).choices


def test_category_attribution_price_denials_and_their_precedence(tmp_path: Path) -> None:
    policies = [{"scope": "department:sales", "deny_categories": ["premium"]},
                {"scope": "department:eng", "require": ["project"]}]
    raw = org(tmp_path, policies=policies, projects=[{"id": "search"}])
    with gateway(config_of(raw)) as gw:
        with pytest.raises(openai.PermissionDeniedError) as err:
            gw.openai("carol").chat.completions.create(model="gpt-4o", messages=PROMPT)
        p = err.value.body["p402"]
        assert p["deny_code"] == "CATEGORY_DENIED" and p["scope"] == "department:sales"
        assert p["recovery"]["action"] == "use_allowed_model"
        assert "gpt-4o-mini" in p["recovery"]["allowed_models"] and "gpt-4o" not in p["recovery"]["allowed_models"]

        with pytest.raises(openai.PermissionDeniedError) as err:
            gw.openai("alice").chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        p = err.value.body["p402"]
        assert p["deny_code"] == "ATTRIBUTION_REQUIRED"
        assert p["recovery"] == {**p["recovery"], "action": "add_attribution", "header": "X-P402-Project"}

        with pytest.raises(openai.PermissionDeniedError) as err:
            gw.openai("alice").chat.completions.create(model="gpt-4o-mini", messages=PROMPT,
                                                             extra_headers={"X-P402-Project": "nonexistent"})
        assert err.value.body["p402"]["deny_code"] == "ATTRIBUTION_REQUIRED"

        with pytest.raises(openai.PermissionDeniedError) as err:
            gw.openai("carol").chat.completions.create(model="local-llm", messages=PROMPT)
        assert err.value.body["p402"]["deny_code"] == "PRICE_UNKNOWN"
        assert err.value.body["p402"]["recovery"]["action"] == "add_price"

        # Missing attribution outranks the category, which outranks the missing price.
        with pytest.raises(openai.PermissionDeniedError) as err:
            gw.openai("alice").chat.completions.create(model="local-llm", messages=PROMPT)
        assert err.value.body["p402"]["deny_code"] == "ATTRIBUTION_REQUIRED"

        ok = gw.openai("alice").chat.completions.create(model="gpt-4o-mini", messages=PROMPT,
                                                              extra_headers={"X-P402-Project": "search"})
        assert ok.choices[0].message.content
        denials = [r for r in ledger(gw.db_path) if r.get("outcome") == "deny"]
        assert [r["deny_code"] for r in denials] == ["CATEGORY_DENIED", "ATTRIBUTION_REQUIRED", "ATTRIBUTION_REQUIRED",
                                                     "PRICE_UNKNOWN", "ATTRIBUTION_REQUIRED"]
        assert all(r["reason"] and r["recovery"]["action"] for r in denials)


def test_mandate_required_budget_denies_without_a_mandate(tmp_path: Path) -> None:
    budgets = [{"id": "ap-agent", "scope": "workflow:ap-agent", "cap_usd": "100", "period": "month",
                "requires_mandate": True}]
    with gateway(config_of(org(tmp_path, budgets))) as gw:
        with pytest.raises(openai.PermissionDeniedError) as err:
            gw.openai("carol").chat.completions.create(model="gpt-4o-mini", messages=PROMPT,
                                                             extra_headers={"X-P402-Workflow": "ap-agent"})
        assert err.value.body["p402"]["deny_code"] == "MANDATE_INACTIVE"
        assert err.value.body["p402"]["recovery"]["action"] == "renew_mandate"
        # Other workflows are not under that budget.
        assert gw.openai("carol").chat.completions.create(model="gpt-4o-mini", messages=PROMPT).choices


def test_shadow_budget_logs_would_deny_but_admits(tmp_path: Path) -> None:
    budgets = [{"id": "shadow", "scope": "tenant:acme", "cap_usd": "0.000001", "period": "day", "mode": "shadow"}]
    with gateway(config_of(org(tmp_path, budgets))) as gw:
        assert gw.openai("carol").chat.completions.create(model="gpt-4o-mini", messages=PROMPT).choices
        decision = next(r for r in ledger(gw.db_path) if r["kind"] == "decision")
        assert decision["outcome"] == "allow" and decision["flags"] == ["shadow:shadow"]
        assert counters(gw.db_path)["shadow"][0] > 0  # the shadow budget still tracks spend


def test_embeddings_are_metered(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path))) as gw:
        raw = gw.openai("carol").embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["budgets decide before the call", "second"], user="cust-42")
        result = raw.parse()
        assert len(result.data) == 2 and len(result.data[0].embedding) == 16
        assert usd(raw.headers["X-P402-Cost-Usd"]) == Decimal(result.usage.prompt_tokens) * Decimal("0.02") / 10**6
        # OpenAI's `user` names the customer on embeddings as on chat (SPEC: attribution).
        decision = next(r for r in ledger(gw.db_path) if r["event_id"] == raw.headers["X-P402-Event-Id"])
        assert decision["customer"] == "cust-42"
        # Token arrays are counted by length; an item that cannot be counted is refused, never
        # counted as nothing (which would make the estimate too low).
        tokens = gw.openai("carol").embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=[[1, 2, 3, 4, 5], [6, 7]])
        bound = next(r for r in ledger(gw.db_path) if r["event_id"] == tokens.headers["X-P402-Event-Id"])
        assert bound["input_tokens"] == 7
        with pytest.raises(openai.BadRequestError) as err:
            gw.openai("carol").embeddings.create(model="text-embedding-3-small", input=["ok", {"text": "x"}])
        assert err.value.param == "input[1]"


def test_models_lists_what_the_key_may_use(tmp_path: Path) -> None:
    raw = org(tmp_path, policies=[{"scope": "department:sales", "deny_categories": ["premium"]}])
    with gateway(config_of(raw)) as gw:
        carol = {m.id for m in gw.openai("carol").models.list()}
        alice = {m.id for m in gw.openai("alice").models.list()}
        assert "gpt-4o" in alice and "gpt-4o" not in carol and "gpt-4o-mini" in carol
        # An unpriced model is configured but always denied (PRICE_UNKNOWN): not a model the key may use.
        assert "local-llm" in gw.runtime.policies.current.models and "local-llm" not in alice | carol
        mini = next(m for m in gw.openai("carol").models.list() if m.id == "gpt-4o-mini")
        p402 = mini.model_extra["p402"] if mini.model_extra else {}
        assert p402["max_output_tokens"] == 4096 and p402["context_window"] == 128_000  # from the price catalog


def test_unknown_missing_and_revoked_keys_get_401_and_no_provider_call(tmp_path: Path) -> None:
    from tests.gatewaykit import ADMIN_TOKEN
    import urllib.request
    with gateway(config_of(org(tmp_path))) as gw:
        bad = gw.openai("sk-not-a-key")
        with pytest.raises(openai.AuthenticationError) as err:
            bad.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        assert err.value.code == "invalid_api_key"
        gw.openai("bob").chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        req = urllib.request.Request(f"{gw.base}/admin/v1/keys/k-bob/revoke", method="POST",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 200
        with pytest.raises(openai.AuthenticationError):
            gw.openai("bob").chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        decisions = [r for r in ledger(gw.db_path) if r["kind"] == "decision"]
        assert len(decisions) == 1  # nothing was decided, let alone sent upstream, for the refused keys


def test_headers_add_scopes_but_never_escape_the_keys_department(tmp_path: Path) -> None:
    budgets = [{"id": "eng-month", "scope": "department:eng", "cap_usd": "0.000001", "period": "month"}]
    with gateway(config_of(org(tmp_path, budgets))) as gw:
        # A header naming another department (or tenant/employee) changes nothing: there is no such header.
        with pytest.raises(openai.APIStatusError) as err:
            gw.openai("alice").chat.completions.create(
                model="gpt-4o-mini", messages=PROMPT, max_tokens=5,
                extra_headers={"X-P402-Department": "sales", "X-P402-Employee": "carol", "X-P402-Tenant": "other"})
        assert err.value.status_code == 402
        # A workflow key cannot claim another workflow.
        with pytest.raises(openai.BadRequestError) as err:
            gw.openai("bot").chat.completions.create(model="gpt-4o-mini", messages=PROMPT,
                                                           extra_headers={"X-P402-Workflow": "other-bot"})
        assert err.value.body["param"] == "X-P402-Workflow"
        ok = gw.openai("carol").chat.completions.create(
            model="gpt-4o-mini", messages=PROMPT, user="cust-42", extra_headers={"X-P402-Feature": "summaries"})
        assert ok.choices
        row = [r for r in ledger(gw.db_path) if r["kind"] == "decision"][-1]
        assert (row["department"], row["customer"], row["feature"]) == ("sales", "cust-42", "summaries")


@pytest.mark.parametrize("name, first, second", [
    ("X-P402-Project", "[not an id]", "apollo"),  # the valid one second: it must not win
    ("X-P402-Customer", "cust-1", "cust-2"),
    ("Authorization", f"Bearer {SECRETS['carol']}", f"Bearer {SECRETS['alice']}"),
])
def test_an_attribution_or_key_header_sent_twice_is_refused_not_picked(tmp_path: Path, name: str, first: str,
                                                                        second: str) -> None:
    import http.client
    from urllib.parse import urlsplit
    with gateway(config_of(org(tmp_path))) as gw:
        parts = urlsplit(gw.base)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        body = orjson.dumps({"model": "gpt-4o-mini", "messages": PROMPT, "max_tokens": 5})
        conn.putrequest("POST", "/v1/chat/completions")
        for header, value in [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                              *([("Authorization", f"Bearer {SECRETS['carol']}")] if name != "Authorization" else []),
                              (name, first), (name, second)]:
            conn.putheader(header, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        error = orjson.loads(resp.read())["error"]
        conn.close()
        assert resp.status == 400 and error["param"] == name, error
        assert error["message"] == f"{name}: sent more than once; send it once"
        assert not [r for r in ledger(gw.db_path) if r["kind"] == "decision"]  # nothing was decided or spent


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model"),
    (b'{"model": "gpt-4o-mini"}', 400, "messages"),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": -3}', 400, "max_tokens"),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, "stream"),
    (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
    (b'{"model": "gpt-4o-mini", "messages": ["hi"]}', 400, "messages[0]"),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "n": 0}', 400, "n"),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream_options": "yes"}', 400,
     "stream_options"),
    # Beyond any model's answer, and beyond what a 64-bit store column can reserve: refused, not a 500.
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4611686018427387904}',
     400, "max_tokens"),
])
def test_bad_input_gets_a_clear_4xx_naming_the_field(tmp_path: Path, body: bytes, status: int, param: str | None) -> None:
    import urllib.error
    import urllib.request
    with gateway(config_of(org(tmp_path))) as gw:
        req = urllib.request.Request(f"{gw.base}/v1/chat/completions", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {SECRETS['alice']}",
                                              "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req)
        assert err.value.code == status
        error = orjson.loads(err.value.read())["error"]
        err.value.close()
        assert error["param"] == param and error["message"]
        if param:
            assert param.split("[")[0] in error["message"]


def test_oversized_body_is_refused_with_413(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path, limits={"max_body_bytes": 1000}))) as gw:
        with pytest.raises(openai.APIStatusError) as err:
            gw.openai().chat.completions.create(model="gpt-4o-mini",
                                                    messages=[{"role": "user", "content": "x" * 5000}])
        assert err.value.status_code == 413


def test_a_mandate_header_that_is_not_a_digest_is_refused_naming_the_header(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path))) as gw:
        with pytest.raises(openai.BadRequestError) as err:
            gw.openai("alice").chat.completions.create(model="gpt-4o-mini", messages=PROMPT,
                                                       extra_headers={"X-P402-Mandate": "junk" * 1000})
        assert err.value.code == "invalid_attribution" and err.value.param == "X-P402-Mandate"
        assert not [r for r in ledger(gw.db_path) if r["kind"] == "decision"]  # nothing decided, nothing kept
        # `stream: null` is OpenAI's default spelled out, not a mistake.
        reply = gw.openai("alice").chat.completions.create(model="gpt-4o-mini", messages=PROMPT,
                                                           extra_body={"stream": None})
        assert reply.choices[0].message.content


def test_the_key_is_checked_before_the_body(tmp_path: Path) -> None:
    """As at any API gateway: without a valid key, a malformed body is still a 401, never parsed."""
    import urllib.error
    import urllib.request
    with gateway(config_of(org(tmp_path))) as gw:
        for secret in (None, "sk-not-a-key"):
            headers = {"Content-Type": "application/json"}
            if secret:
                headers["Authorization"] = f"Bearer {secret}"
            for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/messages"):
                req = urllib.request.Request(gw.base + path, data=b"{not json", method="POST", headers=headers)
                with pytest.raises(urllib.error.HTTPError) as err:
                    urllib.request.urlopen(req)
                err.value.close()
                assert err.value.code == 401, (secret, path)


def test_a_body_that_never_arrives_is_a_408_not_a_connection_held_forever(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from p402.web import bodies
    monkeypatch.setattr(bodies, "BODY_TIMEOUT_S", 0.5)
    with gateway(config_of(org(tmp_path))) as gw:
        host, port = gw.base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: p402\r\nContent-Type: application/json\r\n"
                      b"Authorization: Bearer " + SECRETS["alice"].encode() + b"\r\nContent-Length: 100\r\n\r\n"
                      b'{"model": ')  # ...and nothing more
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
        # The admin API reads its bodies the same way.
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"POST /admin/v1/budgets HTTP/1.1\r\nHost: p402\r\nContent-Type: application/json\r\n"
                      b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n{")
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer


FILE_PART = {"type": "file", "file": {"file_id": "file-abc123"}}  # a PDF the provider reads by id


def test_input_the_request_only_refers_to_is_bounded_by_the_context_window(tmp_path: Path) -> None:
    budgets = [{"id": "eng-month", "scope": "department:eng", "cap_usd": "0.01", "period": "month"}]
    raw = org(tmp_path, budgets)
    for m in raw["models"]:
        if m["name"] == "claude-sonnet-4-6":
            m["context_window"] = 1000  # from the config; gpt-4o-mini's (128,000) comes from the price catalog
        if m["name"] == "local-llm":  # priced in the config, in no catalog: no window known
            m["price"] = {"input_per_mtok": "0.10", "output_per_mtok": "0.10"}
    with gateway(config_of(raw)) as gw:
        with_file = [{"role": "user", "content": [{"type": "text", "text": "Summarise this."}, FILE_PART]}]
        # Counted, the prompt is a few tokens; the file could be up to the whole context window.
        raw_reply = gw.openai("carol").chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=with_file, max_tokens=10)
        assert Decimal(raw_reply.headers["X-P402-Estimate-Usd"]) == (
            Decimal(128_000) * Decimal("0.15") + 10 * Decimal("0.60")) / 1_000_000
        decision = [r for r in ledger(gw.db_path) if r["kind"] == "decision"][-1]
        assert decision["input_tokens"] == 128_000
        # So a budget that the counted text fits, and the file might not, denies it before the call.
        assert gw.openai("alice").chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=10).choices
        with pytest.raises(openai.APIStatusError) as denied:
            gw.openai("alice").chat.completions.create(model="gpt-4o-mini", messages=with_file, max_tokens=10)
        assert denied.value.status_code == 402 and denied.value.code == "BUDGET_EXCEEDED"
        # Anthropic documents and server tools too, bounded by a window set in the config.
        document = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}}
        for extra in ({"messages": [{"role": "user", "content": [document]}]},
                      {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}):
            reply = gw.anthropic("carol").messages.with_raw_response.create(
                **{"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": PROMPT, **extra})
            assert Decimal(reply.headers["X-P402-Estimate-Usd"]) == (1000 * Decimal(3) + 10 * Decimal(15)) / 1_000_000
        # A document given as text is counted like any text.
        text_doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "short"}}
        reply = gw.anthropic("carol").messages.with_raw_response.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": [text_doc]}])
        assert Decimal(reply.headers["X-P402-Estimate-Usd"]) < (1000 * Decimal(3)) / 1_000_000
        # A model with no known window cannot bound it: a 400 that says what to do, and nothing is reserved.
        with pytest.raises(openai.BadRequestError) as err:
            gw.openai("carol").chat.completions.create(model="local-llm", messages=with_file, max_tokens=10)
        assert err.value.body["param"] == "messages" and "context_window" in err.value.body["message"]
        assert sum(r[4] for r in counter_rows(gw.db_path)) == 0


def test_budget_remaining_is_the_smallest_headroom_after_the_reservation_a_per_request_cap_included(
        tmp_path: Path) -> None:
    budgets = [{"id": "sales-month", "scope": "department:sales", "cap_usd": "0.001", "period": "month"},
               {"id": "per-call", "scope": "department:sales", "cap_usd": "0.0009", "period": "request"}]
    with gateway(config_of(org(tmp_path, budgets))) as gw:
        reply = gw.openai("carol").chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT,
                                                                            max_tokens=200)
        estimate = Decimal(reply.headers["X-P402-Estimate-Usd"])
        remaining = Decimal(reply.headers["X-P402-Budget-Remaining-Usd"])
        # per-call binds (0.0009 < 0.001), and after this request what is left of it is 0.0009 - estimate,
        # less than the month's 0.001 - estimate: the header is the smallest headroom after the reservation.
        assert remaining == Decimal("0.0009") - estimate
        decision = [r for r in ledger(gw.db_path) if r["kind"] == "decision"][-1]
        assert decision["binding"]["id"] == "per-call" and Decimal(decision["binding"]["remaining_usd"]) == remaining


def test_a_gateway_that_stops_seals_its_last_rows(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path))) as gw:
        for who in ("alice", "bob", "carol"):
            gw.openai(who).chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=5)
        db_path = gw.db_path
    rows = ledger(db_path)
    last = rows[-1]
    # The last row is a checkpoint that covers every row before it: nothing waits unsealed for the next start.
    assert last["kind"] == "checkpoint" and last["covered_seq"] == last["seq"] - 1 == len(rows) - 1
    assert [r["kind"] for r in rows[-7:-1]] == ["decision", "settle"] * 3
