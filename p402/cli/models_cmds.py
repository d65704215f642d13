"""`p402 models`: what each configured model costs (or what a provider's catalog knows)."""

from __future__ import annotations

import argparse
from typing import Any

from p402.cli.main import CliError

__all__ = ["add_commands", "cmd_models"]

_PROVIDERS = ("openai", "anthropic", "gemini", "bedrock", "openrouter")


def add_commands(sub: Any, add: Any, store_args: Any, parser_class: Any) -> None:
    p = add("models", cmd_models, "list the configured models and their prices (or a provider's price catalog)")
    p.add_argument("--config", default="p402.yaml", help="config file (default ./p402.yaml)")
    p.add_argument("--catalog", metavar="PROVIDER", help=f"list the price package's models of one provider "
                                                         f"({', '.join(_PROVIDERS)}) instead")


def cmd_models(args: argparse.Namespace) -> int:
    from p402.cli.commands import table
    from p402.core.money import format_usd
    if args.catalog:
        if args.catalog not in _PROVIDERS:
            raise CliError(f"--catalog {args.catalog!r} is not one of {', '.join(_PROVIDERS)}", 2)
        from p402.providers.prices import catalog_models
        print(table(["MODEL", "INPUT $/MTOK", "OUTPUT $/MTOK"],
                    [[name, format_usd(p.input), format_usd(p.output)] for name, p in catalog_models(args.catalog)]))
        return 0
    from p402.config import load_config
    from p402.wiring import priced_models
    config = priced_models(load_config(args.config))
    rows = []
    for m in config.models:
        price = m.price
        tiers = "; ".join(f">{above} tok: {format_usd(p.input)}/{format_usd(p.output)}" for above, p in m.price_tiers)
        rows.append([m.name, m.provider, m.upstream, ",".join(sorted(m.categories)) or "-",
                     format_usd(price.input) if price else "UNPRICED", format_usd(price.output) if price else "-",
                     tiers or "-"])
    print(table(["MODEL", "PROVIDER", "UPSTREAM", "CATEGORIES", "INPUT $/MTOK", "OUTPUT $/MTOK", "LONG-PROMPT TIERS"],
                rows))
    return 0
