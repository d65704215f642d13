"""`p402 demo`: a sample organisation, a live gateway and traffic that shows every kind of decision.

Everything runs on the embedded default: a SQLite file in the demo directory and
the built-in simulated provider. The traffic goes over real HTTP to the gateway,
as an SDK's would.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from p402.config import Config, load_config
from p402.mandates import load_key, new_identity, save_key, sign_mandate, sign_override

__all__ = ["demo_config", "run_demo", "SCENARIOS"]

_KEYS = ("alice", "bob", "carol", "dave", "bot")


def demo_config(workdir: Path, admin_token: str) -> Config:
    """Write the demo's p402.yaml (so the CLI can be pointed at it) and load it.

    The support lead owns the bot's and the AP agent's budgets through a fresh
    secp256k1 identity whose key file lands in the demo directory: the demo
    signs a mandate and an override with it while traffic runs.
    """
    secrets_by_key = {k: f"sk-demo-{k}-{secrets.token_urlsafe(12)}" for k in _KEYS}
    owner_key, owner, registration = new_identity("support-lead")
    save_key(workdir / "support-lead.key.json", owner_key, name="support-lead", overwrite=True)
    (workdir / "support-lead.registration.json").write_text(json.dumps(registration, indent=2) + "\n")
    raw: dict[str, Any] = {
        "store": f"sqlite:///{workdir / 'p402.db'}",
        "tenant": "acme",
        "admin_tokens": [{"token": admin_token, "role": "admin"}],
        "providers": {"simulated": {"latency_ms": 40, "completion_tokens": 48}},
        "models": [
            {"name": "gpt-4o-mini", "provider": "simulated", "categories": ["chat", "standard"]},
            {"name": "gpt-4o", "provider": "simulated", "categories": ["chat", "premium"]},
            {"name": "claude-sonnet-4-6", "provider": "simulated", "categories": ["chat", "premium"],
             "price": {"input_per_mtok": "3", "output_per_mtok": "15"}},
            {"name": "text-embedding-3-small", "provider": "simulated", "categories": ["embedding"]},
            {"name": "local-llm", "provider": "simulated", "categories": ["chat"]},
        ],
        "departments": [{"id": "eng", "owner": "0x0000000000000000000000000000000000000e09"},
                        {"id": "sales"}, {"id": "research"}, {"id": "support", "owner": owner}],
        "employees": [{"id": "alice", "department": "eng"}, {"id": "bob", "department": "eng"},
                      {"id": "carol", "department": "sales"}, {"id": "dave", "department": "research"}],
        "keys": [{"id": "k-alice", "employee": "alice", "secret": secrets_by_key["alice"]},
                 {"id": "k-bob", "employee": "bob", "secret": secrets_by_key["bob"]},
                 {"id": "k-carol", "employee": "carol", "secret": secrets_by_key["carol"]},
                 {"id": "k-dave", "employee": "dave", "secret": secrets_by_key["dave"]},
                 {"id": "k-bot", "workflow": "support-bot", "department": "support", "secret": secrets_by_key["bot"]}],
        "projects": [{"id": "search"}, {"id": "chatbot"}, {"id": "billing"}],
        "budgets": [
            {"id": "acme-month", "scope": "tenant:acme", "cap_usd": "50000", "period": "month"},
            {"id": "eng-month", "scope": "department:eng", "cap_usd": "5000", "period": "month"},
            {"id": "per-employee", "scope": "department:eng", "per": "employee", "cap_usd": "200", "period": "month"},
            {"id": "premium", "scope": "department:eng", "categories": ["premium"], "cap_usd": "500", "period": "month"},
            {"id": "bot-hourly", "scope": "workflow:support-bot", "cap_usd": "0.0002", "period": "hour",
             "owner": owner},
            {"id": "big-call", "scope": "tenant:acme", "cap_usd": "0.05", "period": "request"},
            {"id": "research-shadow", "scope": "department:research", "cap_usd": "0.0001", "period": "day",
             "mode": "shadow"},
            {"id": "ap-agent", "scope": "workflow:ap-agent", "cap_usd": "100", "period": "month",
             "requires_mandate": True, "owner": owner},
        ],
        "policies": [{"scope": "department:sales", "deny_categories": ["premium"]},
                     {"scope": "department:eng", "require": ["project"]}],
    }
    path = workdir / "p402.yaml"
    path.write_text("# Written by `p402 demo`. Point any store command at it: p402 spend --config " + str(path)
                    + "\n" + yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


# (label, key, route, body, headers): a cycle of requests that shows admits and each kind of denial.
SCENARIOS: list[tuple[str, str, str, dict[str, Any], dict[str, str]]] = [
    ("alice asks gpt-4o-mini for project search", "alice", "/v1/chat/completions",
     {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Summarise our Q3 cloud bill."}]},
     {"X-P402-Project": "search"}),
    ("bob streams gpt-4o-mini for project chatbot", "bob", "/v1/chat/completions",
     {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Draft a reply."}]},
     {"X-P402-Project": "chatbot"}),
    ("carol (sales) asks for premium gpt-4o", "carol", "/v1/chat/completions",
     {"model": "gpt-4o", "messages": [{"role": "user", "content": "Write a proposal."}]}, {}),
    ("alice forgets her project header", "alice", "/v1/chat/completions",
     {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}, {}),
    ("dave tries an unpriced local model", "dave", "/v1/chat/completions",
     {"model": "local-llm", "messages": [{"role": "user", "content": "Hi"}]}, {}),
    ("the support bot answers a ticket", "bot", "/v1/chat/completions",
     {"model": "gpt-4o-mini", "max_tokens": 200, "messages": [{"role": "user", "content": "Where is my order?"}]}, {}),
    ("the support bot answers another ticket", "bot", "/v1/chat/completions",
     {"model": "gpt-4o-mini", "max_tokens": 200, "messages": [{"role": "user", "content": "Refund please"}]}, {}),
    ("alice asks gpt-4o for 100k tokens in one call", "alice", "/v1/chat/completions",
     {"model": "gpt-4o", "max_tokens": 100000, "messages": [{"role": "user", "content": "Write a novel."}]},
     {"X-P402-Project": "search"}),
    ("carol runs the ap-agent workflow (needs a mandate)", "carol", "/v1/chat/completions",
     {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Pay invoice 42."}]},
     {"X-P402-Workflow": "ap-agent"}),
    ("dave embeds a document", "dave", "/v1/embeddings",
     {"model": "text-embedding-3-small", "input": ["budgets decide before the call"]}, {}),
    ("bob calls claude via the Anthropic Messages API", "bob", "/v1/messages",
     {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi Claude"}]},
     {"X-P402-Project": "billing"}),
]


async def _one(session: aiohttp.ClientSession, base: str, secret: str, scenario: tuple[Any, ...]) -> str:
    label, _, path, body, headers = scenario
    async with session.post(base + path, json=body, headers={"Authorization": f"Bearer {secret}", **headers}) as r:
        await r.read()
        code = r.headers.get("X-P402-Deny-Code")
        if code:
            return f"  DENY  {r.status} {code:<21} {label}"
        if r.status >= 400:
            return f"  FAIL  {r.status} {'':<21} {label}"
        cost = r.headers.get("X-P402-Cost-Usd") or f"~{r.headers.get('X-P402-Estimate-Usd')} (streamed)"
        return f"  ALLOW {r.status} ${cost:<20} {label}"


async def _owner_signs(session: aiohttp.ClientSession, base: str, admin_token: str, workdir: Path) -> None:
    """The budget owner signs a mandate for the AP agent and raises the bot's hourly budget."""
    key, owner = load_key(workdir / "support-lead.key.json")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    mandate = sign_mandate({"budget": "ap-agent", "scope": "workflow:ap-agent", "cap_usd": "100", "period": "month",
                            "valid_until": (now + timedelta(days=30)).isoformat()}, key, now=now)
    override = sign_override({"budget": "bot-hourly", "extra_usd": "0.01",
                              "window_end": (now + timedelta(hours=1)).isoformat()}, key, now=now)
    headers = {"Authorization": f"Bearer {admin_token}"}
    for path, doc, what in (("/admin/v1/mandates", mandate, "a mandate for workflow ap-agent ($100/month)"),
                            ("/admin/v1/overrides", override, "an override: bot-hourly +$0.01 for one hour")):
        async with session.post(base + path, json=doc, headers=headers) as r:
            body = await r.json()
            status = "accepted" if r.status in (200, 201) else f"refused ({r.status}: {body})"
        print(f"{time.strftime('%H:%M:%S')}  OWNER {owner[:10]}… signed {what}: {status}", flush=True)


async def traffic(base: str, secrets_by_key: dict[str, str], rate: float, stop: asyncio.Event,
                  admin_token: str = "", workdir: Path | None = None) -> int:
    """Send the scenarios round and round at `rate` requests per second until `stop`.

    After three rounds the budget owner signs a mandate and an override, so the
    denials they cause turn into admits while you watch.
    """
    sent = 0
    async with aiohttp.ClientSession() as session:
        for scenario in itertools.cycle(SCENARIOS):
            if stop.is_set():
                break
            if sent == 3 * len(SCENARIOS) and workdir is not None:
                await _owner_signs(session, base, admin_token, workdir)
            line = await _one(session, base, secrets_by_key[scenario[1]], scenario)
            print(time.strftime("%H:%M:%S") + line, flush=True)
            sent += 1
            try:
                await asyncio.wait_for(stop.wait(), 1 / rate)
            except asyncio.TimeoutError:
                pass
    return sent


async def run_demo(config: Config, workdir: Path, admin_token: str, port: int, duration: float | None,
                   rate: float) -> None:
    from p402.cli.serve import run_server
    from p402.web.app import GatewayApp
    app = GatewayApp(config)
    server, task = await run_server(app, "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    key_secrets = {k.owner_id if k.owner_kind == "employee" else "bot": k.secret or "" for k in config.keys}
    print(f"""
p402 demo is running (SQLite: {workdir / 'p402.db'}, simulated provider)

  Gateway (OpenAI/Anthropic base URL)  {base}/v1
  Dashboard                            {base}/dashboard?token={admin_token}
  Admin API                            {base}/admin/v1/budgets   (Authorization: Bearer {admin_token})
  Metrics                              {base}/metrics
  Config                               {workdir / 'p402.yaml'}

Try it yourself:
  curl {base}/v1/chat/completions -H 'Authorization: Bearer {key_secrets['alice']}' \\
       -H 'X-P402-Project: search' -H 'Content-Type: application/json' \\
       -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "hi"}}]}}'

Traffic (Ctrl-C to stop):""", flush=True)
    stop = asyncio.Event()
    sender = asyncio.ensure_future(traffic(base, key_secrets, rate, stop, admin_token, workdir))
    try:
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
    except asyncio.CancelledError:
        pass
    finally:
        stop.set()
        await sender
        await _summary(app)
        server.should_exit = True
        await task


async def _summary(app: Any) -> None:
    from datetime import datetime, timezone

    from p402.cli.commands import table
    from p402.core.ledger import verify_chain
    from p402.ops.spend import spend_report
    runtime = app.runtime
    report = await spend_report(runtime.store, runtime.policies.current, "department", "month",
                                datetime.now(timezone.utc))
    print("\nSpend this month by department:")
    print(table(["DEPARTMENT", "SETTLED USD", "RESERVED", "REQUESTS", "DENIED"],
                [[r["department"] or "-", r["settled_usd"], r["reserved_usd"], str(r["requests"]), str(r["denied"])]
                 for r in report["data"]]))
    count, fault = verify_chain(runtime.store.chain())
    print(f"\nLedger: {count} rows, " + ("hash chain intact" if fault is None else f"BROKEN at {fault}"))
    sys.stdout.flush()
