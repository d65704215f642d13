"""Real provider adapters behind the gateway, driven by the official SDKs, against wire-faithful fakes.

Each fake runs on its own event loop thread on loopback; the gateway runs as in
production; the tests assert what the client sees and what the ledger and the
budgets hold afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import anthropic
import openai
import orjson
import pytest

from p402.pipeline.tokens import count_text
from p402.providers.prices import catalog_price
from tests.gatewaykit import config_of, counter_rows, gateway, org, stream_then_leave, wait_until
from tests.providers.fakes.anthropic_fake import AnthropicFake
from tests.providers.fakes.bedrock_fake import BedrockFake
from tests.providers.fakes.gemini_fake import GeminiFake
from tests.providers.fakes.openai_fake import OpenAIFake
from tests.providers.fakes.openrouter_fake import OpenRouterFake

PROMPT = [{"role": "user", "content": "What does p402 do?"}]
MODELS = [
    {"name": "gpt-4o-mini", "provider": "openai", "categories": ["chat"], "fallbacks": ["claude"]},
    {"name": "claude", "provider": "anthropic", "upstream": "claude-sonnet-4-6", "categories": ["chat"]},
    {"name": "gemini", "provider": "gemini", "upstream": "gemini-2.5-flash", "categories": ["chat"]},
    {"name": "nova", "provider": "bedrock", "upstream": "amazon.nova-lite-v1:0", "categories": ["chat"]},
    {"name": "router-mini", "provider": "openrouter", "upstream": "openai/gpt-4o-mini", "categories": ["chat"]},
]


class FakeLoop:
    """Runs fakes on a private event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "fake-session-token")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/p402-test-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/p402-test-credentials")
    runner = FakeLoop()
    servers = {"openai": OpenAIFake(), "anthropic": AnthropicFake(), "gemini": GeminiFake(),
               "bedrock": BedrockFake(), "openrouter": OpenRouterFake()}
    for s in servers.values():
        runner.run(s.start())
    try:
        yield {"servers": servers, "loop": runner}
    finally:
        for s in servers.values():
            runner.run(s.stop())
        runner.close()


def providers_for(servers: dict[str, Any]) -> dict[str, Any]:
    return {"openai": {"api_key": servers["openai"].api_key, "base_url": servers["openai"].base_url, "timeout_s": 5},
            "anthropic": {"api_key": servers["anthropic"].api_key, "base_url": servers["anthropic"].base_url,
                          "timeout_s": 5},
            "gemini": {"api_key": servers["gemini"].api_key, "base_url": servers["gemini"].base_url, "timeout_s": 5},
            "bedrock": {"region": "us-east-1", "base_url": servers["bedrock"].base_url, "timeout_s": 5},
            "openrouter": {"api_key": servers["openrouter"].api_key, "base_url": servers["openrouter"].base_url,
                           "timeout_s": 5}}


@contextlib.contextmanager
def provider_gateway(tmp_path: Path, servers: dict[str, Any]) -> Iterator[Any]:
    raw = org(tmp_path, providers=providers_for(servers), models=MODELS)
    with gateway(config_of(raw)) as gw:
        yield gw


def rows(tmp_path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    with sqlite3.connect(tmp_path / "p402.db") as db:
        out = [orjson.loads(r[0]) for r in db.execute("SELECT body FROM ledger ORDER BY seq")]
    return [r for r in out if kind is None or r["kind"] == kind]


def reserved(tmp_path: Path) -> int:
    return sum(r[4] for r in counter_rows(tmp_path / "p402.db"))


def expected_cost(provider: str, upstream: str, settle: dict[str, Any]) -> Decimal:
    prompt = settle["input_tokens"] + settle["cache_read_tokens"] + settle["cache_write_tokens"]
    price = catalog_price(provider, upstream, prompt)
    assert price is not None
    nanos = -(-(settle["input_tokens"] * price.input + settle["output_tokens"] * price.output
                + settle["cache_read_tokens"] * (price.cache_read or price.input)
                + settle["cache_write_tokens"] * (price.cache_write or price.input)) // 1_000_000)
    return Decimal(nanos) / 10**9


@pytest.mark.parametrize("model, provider, upstream", [
    ("gpt-4o-mini", "openai", "gpt-4o-mini"), ("claude", "anthropic", "claude-sonnet-4-6"),
    ("gemini", "gemini", "gemini-2.5-flash"), ("nova", "bedrock", "amazon.nova-lite-v1:0"),
    ("router-mini", "openrouter", "openai/gpt-4o-mini")])
def test_every_provider_answers_through_the_openai_sdk_and_settles_at_catalog_price(
        tmp_path: Path, fakes: dict[str, Any], model: str, provider: str, upstream: str) -> None:
    with provider_gateway(tmp_path, fakes["servers"]) as gw:
        raw = gw.openai("carol").chat.completions.with_raw_response.create(model=model, messages=PROMPT, max_tokens=64)
        completion = raw.parse()
        assert completion.choices[0].message.content == fakes["servers"][provider].reply_text
        streamed = "".join(c.choices[0].delta.content or "" for c in gw.openai("carol").chat.completions.create(
            model=model, messages=PROMPT, max_tokens=64, stream=True) if c.choices)
        assert streamed == fakes["servers"][provider].reply_text
        settles = rows(tmp_path, "settle")
        assert len(settles) == 2 and all(s["usage_reported"] for s in settles)
        assert Decimal(raw.headers["X-P402-Cost-Usd"]) == expected_cost(provider, upstream, settles[0])
        assert Decimal(settles[1]["cost_usd"]) == expected_cost(provider, upstream, settles[1])
        assert reserved(tmp_path) == 0
        if provider == "openrouter":
            assert settles[0]["provider_cost_usd"] == fakes["servers"]["openrouter"].cost


def upstream_bound(provider: str, body: dict[str, Any]) -> Any:
    """The output bound a provider's request carries, where that provider's API keeps it."""
    if provider == "gemini":
        return body.get("generationConfig", {}).get("maxOutputTokens")
    if provider == "bedrock":
        return body.get("inferenceConfig", {}).get("maxTokens")
    bounds = {f: body[f] for f in ("max_tokens", "max_completion_tokens") if f in body}
    assert len(bounds) == 1, bounds  # one bound, or a provider could pick the other
    return next(iter(bounds.values()))


@pytest.mark.parametrize("model, provider", [("gpt-4o-mini", "openai"), ("claude", "anthropic"),
                                             ("gemini", "gemini"), ("nova", "bedrock"),
                                             ("router-mini", "openrouter")])
def test_the_provider_gets_the_output_bound_the_estimate_was_made_for(tmp_path: Path, fakes: dict[str, Any],
                                                                       model: str, provider: str) -> None:
    server = fakes["servers"][provider]
    with provider_gateway(tmp_path, fakes["servers"]) as gw:
        # A null bound is no bound (the gateway sets one); with both fields, the one the estimate used.
        for extra, expected in [({"max_completion_tokens": None}, None), ({"max_tokens": None}, None),
                                ({"max_completion_tokens": 7, "max_tokens": 100_000}, 7)]:
            raw = gw.openai("carol").chat.completions.with_raw_response.create(model=model, messages=PROMPT,
                                                                              extra_body=extra)
            decision = next(r for r in rows(tmp_path, "decision") if r["event_id"] == raw.headers["X-P402-Event-Id"])
            assert upstream_bound(provider, server.requests[-1].json) == decision["max_tokens"], (extra, decision)
            assert decision["max_tokens"] == (expected or int(raw.headers["X-P402-Max-Tokens"]))


def test_a_messages_request_is_bounded_by_its_max_tokens_alone(tmp_path: Path, fakes: dict[str, Any]) -> None:
    with provider_gateway(tmp_path, fakes["servers"]) as gw:
        for model, provider in [("claude", "anthropic"), ("gpt-4o-mini", "openai")]:
            gw.anthropic("carol").messages.create(model=model, max_tokens=9, messages=PROMPT,
                                                  extra_body={"max_completion_tokens": 100_000})
            assert upstream_bound(provider, fakes["servers"][provider].requests[-1].json) == 9
        assert [d["max_tokens"] for d in rows(tmp_path, "decision")] == [9, 9]


BAD_CHAT: list[tuple[dict[str, Any], str]] = [  # (extra fields of a chat request, the field its 400 names)
    ({"temperature": "hot"}, "temperature"),
    ({"stop": 5}, "stop"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "system", "content": [{"type": "text", "text": 5}]}, *PROMPT]}, "messages[0].content[0].text"),
    ({"messages": [*PROMPT, {"role": "assistant", "content": None, "tool_calls": [1]}]}, "messages[1].tool_calls"),
    ({"messages": [*PROMPT, {"role": "assistant", "tool_calls": [{"function": 5}]}]}, "messages[1].tool_calls[0].function"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}]}, "messages[0].content[0].image_url"),
    ({"tools": 5}, "tools"),
    ({"metadata": "x"}, "metadata"),
]
BAD_MESSAGES: list[tuple[dict[str, Any], str]] = [
    ({"metadata": "x"}, "metadata"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": "x"}]}]}, "messages[0].content[0].source"),
    ({"tools": 5}, "tools"),
    ({"system": [{"type": "text", "text": 5}]}, "system[0].text"),
    ({"stop_sequences": "END"}, "stop_sequences"),
]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude", "gemini", "nova", "router-mini"])
def test_a_request_field_of_the_wrong_shape_is_a_400_naming_it_for_every_provider(
        tmp_path: Path, fakes: dict[str, Any], model: str) -> None:
    with provider_gateway(tmp_path, fakes["servers"]) as gw:
        chat = gw.openai("carol").chat.completions
        for extra, param in BAD_CHAT:
            with pytest.raises(openai.BadRequestError) as err:
                chat.create(**{"model": model, "messages": PROMPT, "max_tokens": 16, **extra})
            assert err.value.body["param"] == param and err.value.body["message"].startswith(param + ": "), extra
        messages = gw.anthropic("carol").messages
        for extra, param in BAD_MESSAGES:
            with pytest.raises(anthropic.BadRequestError) as aerr:
                messages.create(**{"model": model, "max_tokens": 16, "messages": PROMPT, **extra})
            assert aerr.value.body["error"]["message"].startswith(param + ": "), extra
        # What the shapes let through but a translator cannot take is a 400 too, before any call.
        odd_choice = {"type": "function", "function": "lookup"}
        tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
        if model in ("claude", "gemini", "nova"):
            with pytest.raises(openai.BadRequestError) as err:
                chat.create(model=model, messages=PROMPT, max_tokens=16, tools=tools, tool_choice=odd_choice)
            assert "cannot be translated" in err.value.body["message"]
        assert sum(len(server.requests) for server in fakes["servers"].values()) == 0
        assert all(r["outcome"] == "allow" for r in rows(tmp_path, "decision")) and reserved(tmp_path) == 0


def test_anthropic_sdk_reaches_native_and_translated_providers(tmp_path: Path, fakes: dict[str, Any]) -> None:
    with provider_gateway(tmp_path, fakes["servers"]) as gw:
        native = gw.anthropic("carol").messages.create(model="claude", max_tokens=64, messages=PROMPT)
        assert native.content[0].text == fakes["servers"]["anthropic"].reply_text
        translated = gw.anthropic("carol").messages.create(model="gpt-4o-mini", max_tokens=64, messages=PROMPT)
        assert translated.content[0].text == fakes["servers"]["openai"].reply_text
        with gw.anthropic("carol").messages.stream(model="gpt-4o-mini", max_tokens=64, messages=PROMPT) as s:
            assert "".join(s.text_stream) == fakes["servers"]["openai"].reply_text
        assert len(rows(tmp_path, "settle")) == 3 and reserved(tmp_path) == 0


def test_a_rate_limited_model_falls_back_and_each_attempt_is_ledgered(tmp_path: Path, fakes: dict[str, Any]) -> None:
    fakes["servers"]["openai"].faults.status = 429
    with provider_gateway(tmp_path, fakes["servers"]) as gw:
        answer = gw.openai("carol").chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=64)
        assert answer.choices[0].message.content == fakes["servers"]["anthropic"].reply_text
        decisions = rows(tmp_path, "decision")
        assert [d["model"] for d in decisions] == ["gpt-4o-mini", "claude"]
        assert decisions[0]["event_id"] != decisions[1]["event_id"]
        released = rows(tmp_path, "release")
        assert len(released) == 1 and released[0]["status"] == "upstream_error" and Decimal(released[0]["cost_usd"]) == 0
        assert len(rows(tmp_path, "settle")) == 1 and reserved(tmp_path) == 0


def test_upstream_errors_reach_the_client_and_release_the_hold(tmp_path: Path, fakes: dict[str, Any]) -> None:
    with provider_gateway(tmp_path, fakes["servers"]) as gw:
        fakes["servers"]["gemini"].faults.status = 400
        with pytest.raises(openai.BadRequestError):
            gw.openai("carol").chat.completions.create(model="gemini", messages=PROMPT, max_tokens=64)
        fakes["servers"]["gemini"].faults.status = 503
        with pytest.raises(openai.APIStatusError) as err:
            gw.openai("carol").chat.completions.create(model="gemini", messages=PROMPT, max_tokens=64)
        assert err.value.status_code in (502, 503)
        assert [r["kind"] for r in rows(tmp_path) if r["kind"] != "policy"] == \
            ["decision", "release", "decision", "release"]
        assert reserved(tmp_path) == 0


def test_a_stream_broken_midway_is_settled_at_its_estimate_with_what_was_seen(tmp_path: Path,
                                                                             fakes: dict[str, Any]) -> None:
    fakes["servers"]["openai"].faults.break_after = 3
    with provider_gateway(tmp_path, fakes["servers"]) as gw:
        received = []
        with pytest.raises(openai.APIError):
            for chunk in gw.openai("carol").chat.completions.create(model="gpt-4o-mini", messages=PROMPT,
                                                                    max_tokens=64, stream=True):
                received.extend(c.delta.content or "" for c in chunk.choices)
        settle = rows(tmp_path, "settle")
        assert len(settle) == 1 and settle[0]["status"] == "upstream_error"
        # The client got every piece the provider sent before it broke, and the ledger says how many
        # tokens that was; but with no usage report, what the provider bills (hidden reasoning too) is
        # unknown: the call is settled at its reserved estimate, flagged unmetered.
        sent = fakes["servers"]["openai"].sent_text
        assert sent and "".join(received) == sent
        assert settle[0]["output_tokens"] == count_text(sent, "o200k_base")
        assert settle[0]["cost_usd"] == settle[0]["estimate_usd"] and settle[0]["flags"] == ["unmetered"]
        assert reserved(tmp_path) == 0


def test_a_client_leaving_mid_stream_stops_the_provider_and_is_charged_its_estimate(
        tmp_path: Path, fakes: dict[str, Any]) -> None:
    upstream = fakes["servers"]["openai"]
    upstream.faults.endless = True  # a long answer, one piece every few milliseconds
    upstream.faults.chunk_delay_s = 0.01
    with provider_gateway(tmp_path, fakes["servers"]) as gw:
        stream_then_leave(gw, {"model": "gpt-4o-mini", "stream": True, "max_tokens": 4000, "messages": PROMPT}, "carol")
        assert fakes["loop"].run(asyncio.wait_for(upstream.client_gone.wait(), 5)) is True  # upstream was hung up
        wait_until(lambda: bool(rows(tmp_path, "settle")))
        settle = rows(tmp_path, "settle")
        assert len(settle) == 1 and settle[0]["status"] == "client_disconnected"
        assert 4 <= settle[0]["output_tokens"] < 4000  # what streamed before the client left
        assert settle[0]["cost_usd"] == settle[0]["estimate_usd"] and settle[0]["flags"] == ["unmetered"]
        assert reserved(tmp_path) == 0


def test_a_call_that_fails_after_it_was_sent_is_charged_its_estimate_one_never_sent_nothing(
        tmp_path: Path, fakes: dict[str, Any]) -> None:
    fakes["servers"]["openai"].faults.hang = True  # takes the request, never answers: it may bill it
    raw = org(tmp_path, providers=providers_for(fakes["servers"]), models=MODELS)
    raw["providers"]["openai"]["timeout_s"] = 1
    raw["providers"]["anthropic"]["base_url"] = "http://127.0.0.1:9"  # nothing listens: never sent
    with gateway(config_of(raw)) as gw:
        for model in ("gpt-4o-mini", "claude"):
            with pytest.raises(openai.APIStatusError):
                gw.openai("carol").chat.completions.create(
                    model=model, messages=PROMPT, max_tokens=64)
        decisions = {d["model"]: d for d in rows(tmp_path, "decision")}
        ends = {e["model"]: e for e in rows(tmp_path) if e["kind"] in ("settle", "release")}
        timed_out, refused = ends["gpt-4o-mini"], ends["claude"]
        assert timed_out["kind"] == "settle" and timed_out["flags"] == ["unmetered"]
        assert timed_out["cost_usd"] == decisions["gpt-4o-mini"]["estimate_usd"]
        assert refused["kind"] == "release" and Decimal(refused["cost_usd"]) == 0 and refused["flags"] == []
        assert reserved(tmp_path) == 0


def test_a_denied_request_never_reaches_any_provider(tmp_path: Path, fakes: dict[str, Any]) -> None:
    """Deny before spend (SPEC §2.1): every refusal is decided before a byte goes upstream."""
    budgets = [{"id": "tiny", "scope": "department:sales", "cap_usd": "0.0000001", "period": "day"}]
    policies = [{"scope": "department:eng", "deny_categories": ["chat"]}]
    raw = org(tmp_path, budgets, policies, providers=providers_for(fakes["servers"]), models=MODELS)
    with gateway(config_of(raw)) as gw:
        for model in ("gpt-4o-mini", "claude", "gemini", "nova", "router-mini"):
            with pytest.raises(openai.APIStatusError) as budget:
                gw.openai("carol").chat.completions.create(model=model, messages=PROMPT, max_tokens=64)
            assert budget.value.status_code == 402 and budget.value.code == "BUDGET_EXCEEDED"
            with pytest.raises(openai.PermissionDeniedError) as category:
                gw.openai("alice").chat.completions.create(model=model, messages=PROMPT, stream=True)
            assert category.value.code == "CATEGORY_DENIED"
            with pytest.raises(openai.AuthenticationError):
                gw.openai("sk-not-a-key").chat.completions.create(model=model, messages=PROMPT)
        assert {name: len(s.requests) for name, s in fakes["servers"].items()} == {
            "openai": 0, "anthropic": 0, "gemini": 0, "bedrock": 0, "openrouter": 0}
        assert len(rows(tmp_path, "decision")) == 10 and not rows(tmp_path, "settle")


def test_a_provider_billing_more_than_the_estimate_is_settled_in_full_and_flagged_overrun(
        tmp_path: Path, fakes: dict[str, Any]) -> None:
    """SPEC §2.4: the actual cost is what is settled, even above the reservation, and the ledger says so."""
    fake = fakes["servers"]["openai"]
    fake.prompt_tokens = 50_000  # the provider bills a prompt far larger than the one we bounded
    with provider_gateway(tmp_path, fakes["servers"]) as gw:
        raw = gw.openai("carol").chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT,
                                                                            max_tokens=16)
        estimate = Decimal(raw.headers["X-P402-Estimate-Usd"])
        cost = Decimal(raw.headers["X-P402-Cost-Usd"])
        settle = rows(tmp_path, "settle")[0]
        assert cost == expected_cost("openai", "gpt-4o-mini", settle) > estimate
        assert settle["flags"] == ["overrun"] and Decimal(settle["overrun_usd"]) == cost - estimate
        assert reserved(tmp_path) == 0
        settled = {r[0]: r[3] for r in counter_rows(tmp_path / "p402.db")}
        assert settled and all(Decimal(s) / 10**9 == cost for s in settled.values())
