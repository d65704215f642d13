"""The benchmark's organisation: one tenant, 20 departments, 2,000 employees and keys, budgets on 4 levels.

Every request the load generator sends is checked against four counters:
the tenant's monthly budget, its department's monthly budget, the employee's
own daily budget (`per: employee`) and its project's monthly budget. Caps are
high enough that nothing is denied during a run: the benchmark measures the
full admit path (reserve, relay, settle, two ledger rows), not the cheaper
denial path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEPARTMENTS", "EMPLOYEES", "PROJECTS", "MODEL", "SLOW_MODEL", "bench_config", "write_config", "clients",
           "chat_body"]

DEPARTMENTS = 20
EMPLOYEES = 2_000
PROJECTS = 10
MODEL = "gpt-4o-mini"
SLOW_MODEL = "slow-gpt-4o-mini"  # the fake upstream drips its streams (the memory phase)
MAX_TOKENS = 64
# About 40 o200k tokens: a short chat turn. Token counting is part of p402's cost, so it is not empty.
PROMPT = ("You are a helpful assistant for the finance team. Summarise the three largest cloud cost drivers "
          "of last quarter in two sentences, and name one saving we could make this month.")


def _secret(i: int) -> str:
    # Deterministic, so the generator can be built from the same function; 40 characters like a real key.
    return f"sk-bench-{i:05d}-" + f"{(i * 2654435761) % 2**64:020d}"[:20].rjust(20, "0")


def clients() -> list[tuple[str, str]]:
    """(secret, project) per employee, in the order the generator cycles through them."""
    return [(_secret(i), f"p{i % PROJECTS}") for i in range(EMPLOYEES)]


def chat_body(model: str = MODEL, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": MAX_TOKENS,
                            "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def bench_config(store_path: Path, upstream: str) -> dict[str, Any]:
    """The p402.yaml mapping for a store file and the fake upstream's base URL (`http://host:port/v1`)."""
    departments = [{"id": f"d{d:02d}"} for d in range(DEPARTMENTS)]
    employees = [{"id": f"e{i:05d}", "department": f"d{i % DEPARTMENTS:02d}"} for i in range(EMPLOYEES)]
    keys = [{"id": f"k-e{i:05d}", "employee": f"e{i:05d}", "secret": _secret(i)} for i in range(EMPLOYEES)]
    budgets = [{"id": "acme-month", "scope": "tenant:acme", "cap_usd": "1000000", "period": "month"},
               {"id": "per-employee-day", "scope": "tenant:acme", "per": "employee", "cap_usd": "500",
                "period": "day"}]
    budgets += [{"id": f"dept-{d['id']}-month", "scope": f"department:{d['id']}", "cap_usd": "100000",
                 "period": "month"} for d in departments]
    budgets += [{"id": f"project-p{p}-month", "scope": f"project:p{p}", "cap_usd": "100000", "period": "month"}
                for p in range(PROJECTS)]
    price = {"input_per_mtok": "0.15", "output_per_mtok": "0.60"}
    return {
        "store": f"sqlite:///{store_path}",
        "tenant": "acme",
        # The pool is sized above the largest phase (1,000 streams) so p402 never queues for a connection.
        "providers": {"openai": {"api_key": "sk-fake-upstream", "base_url": upstream, "max_connections": 2048}},
        "models": [{"name": MODEL, "provider": "openai", "categories": ["chat", "standard"], "price": price},
                   {"name": SLOW_MODEL, "provider": "openai", "categories": ["chat", "standard"], "price": price}],
        "departments": departments,
        "employees": employees,
        "keys": keys,
        "projects": [{"id": f"p{p}"} for p in range(PROJECTS)],
        "budgets": budgets,
        "policies": [{"scope": "tenant:acme", "require": ["project"]}],
    }


def write_config(path: Path, store_path: Path, upstream: str) -> Path:
    path.write_text(yaml.safe_dump(bench_config(store_path, upstream), sort_keys=False))
    return path
