"""No overspend under concurrency: many requests race small budgets on several scopes, across two replicas."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from pathlib import Path

import aiohttp

from p402.core.ledger import verify_chain
from p402.prove.audit import verify_rows
from p402.prove.signing import Signer
from p402.pipeline.tokens import chat_input_bound
from p402.stores.sqlite import SqliteStore
from tests.gatewaykit import SECRETS, config_of, gateway, org

BODY = {"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "race"}]}


def test_racing_requests_never_exceed_any_cap_and_leave_nothing_reserved(tmp_path: Path) -> None:
    estimate = chat_input_bound(BODY, "o200k_base") * 150 + 10 * 600  # nanos: 0.15 $/Mtok in, 0.60 out
    budgets = [
        {"id": "tenant", "scope": "tenant:acme", "cap_usd": "1", "period": "month"},
        {"id": "eng", "scope": "department:eng", "cap_usd": _usd(estimate * 31 // 2), "period": "day"},
        {"id": "each", "scope": "department:eng", "per": "employee", "cap_usd": _usd(estimate * 10), "period": "day"},
    ]
    config = config_of(org(tmp_path, budgets))
    with contextlib.ExitStack() as stack:
        # Two replicas sharing one store, each with its own connection and event loop.
        replicas = [stack.enter_context(gateway(config)) for _ in range(2)]
        statuses = asyncio.run(_race([r.base for r in replicas], 120))
    admitted = [who for status, who in statuses if status == 200]
    assert Counter(s for s, _ in statuses).keys() <= {200, 402}
    assert len(admitted) == 15  # floor(15.5): the department cap binds, exactly
    assert max(Counter(admitted).values()) <= 10  # and no employee got past their own cap
    with sqlite3.connect(tmp_path / "p402.db") as db:
        rows = db.execute("SELECT budget_id, member, settled, reserved FROM counters").fetchall()
        assert db.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 0
    caps = {"tenant": 10**9, "eng": estimate * 31 // 2, "each": estimate * 10}
    for budget_id, member, settled, reserved in rows:
        assert reserved == 0
        assert settled <= caps[budget_id]
    assert sum(r[2] for r in rows if r[0] == "eng") == 15 * estimate
    store = SqliteStore(str(tmp_path / "p402.db"))
    count, fault = verify_chain(store.chain())
    asyncio.run(store.close())
    assert fault is None and count >= 120 + 15


async def _race(bases: list[str], n: int) -> list[tuple[int, str]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(i: int) -> tuple[int, str]:
            who = ("alice", "bob")[i % 2]
            async with session.post(f"{bases[i % len(bases)]}/v1/chat/completions", json=BODY,
                                    headers={"Authorization": f"Bearer {SECRETS[who]}"}) as r:
                await r.read()
                return r.status, who
        return await asyncio.gather(*(one(i) for i in range(n)))


def _usd(nanos: int) -> str:
    from p402.core.money import format_usd
    return format_usd(nanos)


def test_replicas_sharing_postgresql_never_overspend(tmp_path: Path) -> None:
    import uuid

    import psycopg

    from p402.stores.postgres import PostgresStore
    schema = f"p402_e2e_{uuid.uuid4().hex[:12]}"
    base_url = "postgresql://postgres@127.0.0.1:5432/test"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        estimate = chat_input_bound(BODY, "o200k_base") * 150 + 10 * 600
        budgets = [{"id": "eng", "scope": "department:eng", "cap_usd": _usd(estimate * 21 // 2), "period": "day"}]
        raw = org(tmp_path, budgets, ledger={"signing_key": str(tmp_path / "ledger-key.pem"),
                                             "checkpoint_max_events": 5})
        raw["store"] = f"{base_url}?options=-c%20search_path%3D{schema}"
        config = config_of(raw)
        with contextlib.ExitStack() as stack:
            replicas = [stack.enter_context(gateway(config)) for _ in range(2)]
            statuses = asyncio.run(_race([r.base for r in replicas], 80))
            _wait_for_checkpoint(base_url, schema)
        assert sum(1 for s, _ in statuses if s == 200) == 10  # floor(10.5), across both replicas
        with psycopg.connect(base_url, autocommit=True, options=f"-c search_path={schema}") as conn:
            settled, reserved = conn.execute("SELECT SUM(settled), SUM(reserved) FROM counters").fetchone()
            holds = conn.execute("SELECT COUNT(*) FROM holds").fetchone()[0]
        assert (settled, reserved, holds) == (10 * estimate, 0, 0)

        async def verify() -> tuple[int, object, object]:
            store = await PostgresStore.connect(base_url, schema)
            try:
                key = Signer.load_or_create(tmp_path / "ledger-key.pem").public_key
                return (*verify_chain(store.chain()), verify_rows(store.chain(), key))
            finally:
                await store.close()
        count, fault, audit = asyncio.run(verify())
        assert fault is None and count >= 80 + 10
        # Both replicas ran a sealer loop; the advisory lock let one seal, so the checkpoints form one chain.
        assert audit.ok and audit.checkpoints >= 1, audit.summary()
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _wait_for_checkpoint(url: str, schema: str, timeout_s: float = 10.0) -> None:
    """The sealers look every second; wait until one has sealed the race's rows."""
    import time

    import psycopg
    deadline = time.time() + timeout_s
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn:
        while time.time() < deadline:
            last = conn.execute("SELECT MAX(seq) FROM ledger WHERE kind = 'checkpoint'").fetchone()[0]
            total = conn.execute("SELECT MAX(seq) FROM ledger").fetchone()[0]
            if last is not None and last >= total - 1:
                return
            time.sleep(0.2)
