"""Build the configured provider adapters by name (the composition root calls this once).

Adapters are imported lazily so a gateway that only uses, say, the simulated
provider never imports botocore.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Mapping

from p402.errors import ConfigError
from p402.pipeline.ports import Provider

__all__ = ["build_providers", "ADAPTERS"]

# provider name -> (module, class); every adapter takes (name, settings).
ADAPTERS = {
    "openai": ("p402.providers.openai", "OpenAIAdapter"),
    "anthropic": ("p402.providers.anthropic", "AnthropicAdapter"),
    "gemini": ("p402.providers.gemini", "GeminiAdapter"),
    "bedrock": ("p402.providers.bedrock", "BedrockAdapter"),
    "openrouter": ("p402.providers.openrouter", "OpenRouterAdapter"),
}


def build_providers(settings: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Provider]:
    """One adapter per configured provider name (SPEC §5 `providers:`)."""
    out: dict[str, Provider] = {}
    for name, raw in settings.items():
        options = dict(raw or {})
        if name == "simulated":
            from p402.providers.simulated import SimulatedProvider

            out[name] = SimulatedProvider(options)
            continue
        if name not in ADAPTERS:
            known = ", ".join(["simulated", *ADAPTERS])
            raise ConfigError(f"providers.{name}: unknown provider; expected one of {known}")
        module, cls = ADAPTERS[name]
        out[name] = getattr(import_module(module), cls)(name, options)
    return out
