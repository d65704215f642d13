"""Building adapters from the providers mapping, and what every adapter promises."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import p402.providers.anthropic
import p402.providers.bedrock
import p402.providers.gemini
import p402.providers.openai
import p402.providers.openrouter
from p402.errors import ConfigError
from p402.pipeline.ports import Call
from p402.providers.registry import build_providers
from tests.providers.helpers import run

SETTINGS: dict[str, dict[str, Any]] = {"openai": {"api_key": "sk-1"}, "anthropic": {"api_key": "sk-ant"}, "gemini": {"api_key": "g"},
            "bedrock": {"region": "us-west-2"}, "openrouter": {"api_key": "or", "timeout_s": 30}}
ROUTES = {"openai": {"chat", "embeddings", "messages"}, "anthropic": {"chat", "messages"},
          "gemini": {"chat", "messages"}, "bedrock": {"chat", "messages"},
          "openrouter": {"chat", "embeddings", "messages"}}


def test_every_configured_provider_gets_its_adapter_and_routes() -> None:
    providers = build_providers(SETTINGS)  # outside any event loop: sessions are made lazily
    assert set(providers) == set(SETTINGS)
    for name, provider in providers.items():
        assert provider.name == name and set(provider.routes) == ROUTES[name]
    bedrock: Any = providers["bedrock"]
    assert bedrock.base_url == "https://bedrock-runtime.us-west-2.amazonaws.com"
    openrouter: Any = providers["openrouter"]
    assert openrouter.http.settings.timeout_s == 30
    run(_close_all(providers))


async def _close_all(providers: dict) -> None:
    for p in providers.values():
        await p.close()


def test_unknown_providers_and_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="providers.azure"):
        build_providers({"azure": {}})
    with pytest.raises(ConfigError, match="providers.openai.timeout_s"):
        build_providers({"openai": {"timeout_s": "soon"}})
    with pytest.raises(ConfigError, match="providers.anthropic.base_url"):
        build_providers({"anthropic": {"base_url": "api.anthropic.com"}})


def test_a_route_the_provider_cannot_serve_is_answered_in_the_clients_format() -> None:
    async def test() -> None:
        adapter = build_providers({"anthropic": {"api_key": "k"}})["anthropic"]
        reply = await adapter.send(Call(route="embeddings", body={"model": "m", "input": "x"}, stream=False,
                                        upstream_model="m"))
        assert reply.status == 400 and "cannot serve" in orjson.loads(reply.body or b"")["error"]["message"]
        await adapter.close()

    run(test())


@pytest.mark.parametrize("module", [p402.providers.openai, p402.providers.anthropic, p402.providers.gemini,
                                    p402.providers.bedrock, p402.providers.openrouter])
def test_public_surfaces_are_declared(module: object) -> None:
    names = getattr(module, "__all__")
    assert names and all(hasattr(module, n) for n in names)
    assert (getattr(module, "__doc__") or "").strip()


def test_no_adapter_shows_its_key() -> None:
    providers = build_providers({k: {**v, "api_key": "SECRET-123"} for k, v in SETTINGS.items()})
    assert all("SECRET-123" not in repr(p) for p in providers.values())
