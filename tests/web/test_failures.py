"""Failure paths: fail closed with a spool, orphaned holds, clients that leave mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import openai
import orjson
import pytest

from p402.core.decision import Ask, Plan, decide, prepare
from p402.core.scopes import Attribution
from p402.ops import spool as spool_module
from p402.ops.spool import FileSpool
from p402.pipeline import gateway as gateway_module
from p402.pipeline.records import decision_entry
from p402.stores.sqlite import SqliteStore
from p402.wiring import default_spool_path
from tests.gatewaykit import (SECRETS, config_of, counter_rows, gateway, org, pg_database, stream_then_leave,
                              wait_until)
from tests.stores.test_postgres import Relay
from tests.web.test_admin import call

PROMPT = [{"role": "user", "content": "hello"}]


def rows(db: Path) -> list[dict]:
    with sqlite3.connect(db) as c:
        return [orjson.loads(r[0]) for r in c.execute("SELECT body FROM ledger ORDER BY seq")]


def on_loop(gw, coro):  # type: ignore[no-untyped-def]
    """Run a coroutine on the gateway's own event loop (its store connection lives there)."""
    return asyncio.run_coroutine_threadsafe(coro, gw.runtime.loop).result(timeout=10)


def test_store_unreachable_fails_closed_and_the_spooled_decision_reaches_the_ledger(tmp_path: Path) -> None:
    raw = org(tmp_path)
    raw["store"] += "?busy_timeout_ms=50"
    with gateway(config_of(raw)) as gw:
        blocker = sqlite3.connect(tmp_path / "p402.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the store: nothing can be reserved
        try:
            with pytest.raises(openai.APIStatusError) as err:
                gw.openai().chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
            assert err.value.status_code == 503 and err.value.code == "POLICY_UNAVAILABLE"
            with urllib.request.urlopen(f"{gw.base}/readyz") as ready:
                assert ready.status == 200  # reads still work while a writer holds the lock
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        event_id = err.value.response.headers["X-P402-Event-Id"]
        assert event_id not in {r["event_id"] for r in rows(tmp_path / "p402.db")}
        on_loop(gw, gw.runtime.replay_spool())  # (the gateway's own replay loop may have done it already)
        spooled = [r for r in rows(tmp_path / "p402.db") if r["event_id"] == event_id]
        assert len(spooled) == 1 and spooled[0]["error"] == "POLICY_UNAVAILABLE" and spooled[0]["outcome"] == "deny"
        assert gw.runtime.spool.pending() == 0
        # And service resumes by itself.
        assert gw.openai().chat.completions.create(model="gpt-4o-mini", messages=PROMPT).choices


def test_a_hold_whose_request_vanished_is_settled_at_its_reservation_and_flagged_orphaned(tmp_path: Path) -> None:
    raw = org(tmp_path, limits={"hold_ttl_s": 0.2})
    with gateway(config_of(raw)) as gw:
        # A replica reserves and crashes before it can settle: its hold is left behind.
        crashed = SqliteStore(str(tmp_path / "p402.db"))
        policy = gw.runtime.policies.current
        now = gw.runtime.clock()
        ask = Ask(Attribution("acme", "k-alice", "eng", "alice"), policy.models["gpt-4o-mini"], 10, 100, True, now)
        plan = prepare(ask, policy)
        assert isinstance(plan, Plan)
        decision, hold = asyncio.run(crashed.reserve(plan, decide, lambda d, h: decision_entry(
            "evt_crashed", now, ask, "chat", d, policy.version, h), 0.2, now))
        asyncio.run(crashed.close())
        assert decision.allowed and hold
        time.sleep(0.3)
        on_loop(gw, gw.runtime.expire())  # (or the gateway's own expiry loop, whichever runs first)
        expired = [r for r in rows(tmp_path / "p402.db") if r["kind"] == "expire"]
        assert len(expired) == 1 and expired[0]["flags"] == ["orphaned"] and expired[0]["event_id"] == "evt_crashed"
        [(_, _, _, settled, reserved)] = counter_rows(tmp_path / "p402.db")
        assert (settled, reserved) == (decision.estimate_nanos, 0)


@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"])
def test_an_orphaned_charge_is_attributed_in_the_ledger_under_the_policy_current_at_expiry(
        tmp_path: Path, store_kind: str) -> None:
    raw = org(tmp_path, limits={"hold_ttl_s": 0.2})
    raw["providers"]["simulated"]["latency_ms"] = 1500  # the call outlives its hold's lease
    with contextlib.ExitStack() as stack:
        if store_kind == "postgres":
            raw["store"] = stack.enter_context(pg_database("p402_expire"))
            raw.setdefault("ledger", {})["signing_key"] = str(tmp_path / "ledger-key.pem")  # not the working directory
        gw = stack.enter_context(gateway(config_of(raw)))
        client = gw.openai("alice")
        pool = stack.enter_context(ThreadPoolExecutor(1))
        in_flight = pool.submit(lambda: client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=PROMPT, max_tokens=20, user="cust-9",
            extra_headers={"X-P402-Project": "apollo", "X-P402-Feature": "search"}))
        wait_until(lambda: call(gw, "GET", "/ledger/events?kind=decision")[1]["data"])
        # Policy changes while the request is in flight: its orphaned charge is written under the new version.
        assert call(gw, "POST", "/budgets", body={"id": "eng-month", "scope": "department:eng", "cap_usd": "5",
                                                  "period": "month"})[0] == 201
        time.sleep(0.3)
        assert on_loop(gw, gw.runtime.expire()) == 1
        event_id = in_flight.result(timeout=10).headers["X-P402-Event-Id"]

        status, page = call(gw, "GET", "/ledger/events?scope=department:eng&kind=expire")
        assert status == 200
        [expired] = page["data"]
        story = {r["kind"]: r for r in call(gw, "GET", f"/ledger/events/{event_id}")[1]["rows"]}
        decision, change = story["decision"], call(gw, "GET", "/ledger/events?kind=policy&limit=1")[1]["data"][0]
        assert (expired["event_id"], expired["ref"], expired["flags"]) == (event_id, event_id, ["orphaned"])
        attribution = ("tenant", "key", "department", "employee", "workflow", "customer", "project", "feature",
                       "model", "provider")
        assert {k: expired[k] for k in attribution} == {k: decision[k] for k in attribution} == {
            "tenant": "acme", "key": "k-alice", "department": "eng", "employee": "alice", "workflow": None,
            "customer": "cust-9", "project": "apollo", "feature": "search", "model": "gpt-4o-mini",
            "provider": "simulated"}
        assert expired["cost_usd"] == decision["estimate_usd"]
        assert expired["policy_version"] == change["policy_version"] > decision["policy_version"]
        # Every attribution the ledger is filtered by finds it, and only its own.
        for scope in ("employee:alice", "key:k-alice", "project:apollo", "customer:cust-9", "feature:search"):
            assert [r["event_id"] for r in call(gw, "GET", f"/ledger/events?scope={scope}&kind=expire")[1]["data"]
                    ] == [event_id], scope
        assert call(gw, "GET", "/ledger/events?scope=department:sales&kind=expire")[1]["data"] == []
        assert "settled in full at $" in story["expire"]["explanation"]
        assert "late_settle" in story and "reported back after its lease had run out" in story["late_settle"]["explanation"]


def test_a_client_leaving_mid_stream_stops_the_call_and_pays_for_what_was_generated(tmp_path: Path) -> None:
    raw = org(tmp_path)
    raw["providers"]["simulated"].update({"completion_tokens": 400, "stream_delay_ms": 20})
    with gateway(config_of(raw)) as gw:
        stream_then_leave(gw, {"model": "gpt-4o-mini", "stream": True, "messages": PROMPT})
        wait_until(lambda: any(r["kind"] == "settle" for r in rows(tmp_path / "p402.db")))
        settle = [r for r in rows(tmp_path / "p402.db") if r["kind"] == "settle"]
        assert len(settle) == 1 and settle[0]["status"] == "client_disconnected"
        assert 4 <= settle[0]["output_tokens"] < 400  # stopped long before the full answer
        assert sum(r[4] for r in counter_rows(tmp_path / "p402.db")) == 0


def test_a_client_gone_before_the_stream_began_is_settled_once(tmp_path: Path) -> None:
    raw = org(tmp_path)
    raw["providers"]["simulated"].update({"latency_ms": 300, "completion_tokens": 50, "stream_delay_ms": 20})
    with gateway(config_of(raw)) as gw:
        stream_then_leave(gw, {"model": "gpt-4o-mini", "stream": True, "messages": PROMPT}, events=0)
        wait_until(lambda: any(r["kind"] in ("settle", "release") for r in rows(tmp_path / "p402.db")))
        time.sleep(0.3)  # anything else that would be written (a second settlement) would be by now
        ends = [r for r in rows(tmp_path / "p402.db") if r["kind"] in ("settle", "release", "late_settle")]
        assert len(ends) == 1 and ends[0]["status"] == "client_disconnected"
        assert sum(r[4] for r in counter_rows(tmp_path / "p402.db")) == 0
        with sqlite3.connect(tmp_path / "p402.db") as db:
            assert db.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 0


def test_a_key_that_cannot_be_looked_up_fails_closed_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store is gone before the key was ever seen: 503 POLICY_UNAVAILABLE, not a 500, on every route."""
    monkeypatch.setattr(gateway_module, "UNKNOWN_KEY_REFUSALS_PER_S", 0.0)  # no refill: the burst is all
    monkeypatch.setattr(gateway_module, "UNKNOWN_KEY_REFUSALS_BURST", 5)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    relay = Relay()  # PostgreSQL behind a loopback relay this test can cut
    try:
        with pg_database("p402_keyfail") as url:
            asyncio.run_coroutine_threadsafe(relay.start(), loop).result(10)
            raw = org(tmp_path)
            raw["store"] = url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
            raw.setdefault("ledger", {})["signing_key"] = str(tmp_path / "ledger-key.pem")  # not the working directory
            with gateway(config_of(raw)) as gw:
                asyncio.run_coroutine_threadsafe(relay.stop(), loop).result(10)  # the database is gone
                with pytest.raises(openai.APIStatusError) as err:
                    gw.openai("bob").chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
                assert err.value.status_code == 503 and err.value.code == "POLICY_UNAVAILABLE"
                assert err.value.response.headers["Retry-After"] == "5"
                assert err.value.response.headers["X-P402-Event-Id"].startswith("evt_")
                with pytest.raises(openai.APIStatusError) as err:
                    gw.openai("carol").models.list()
                assert err.value.status_code == 503 and err.value.code == "POLICY_UNAVAILABLE"
                with anthropic.Anthropic(base_url=gw.base, api_key=SECRETS["eng"], max_retries=0) as client, \
                        pytest.raises(anthropic.APIStatusError) as aerr:
                    client.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=PROMPT)
                assert aerr.value.status_code == 503
                # The refusal itself is kept for the ledger (fail closed, lose nothing), as a decision
                # row like any other: the tenant and the policy it was refused under.
                assert gw.runtime.spool.pending() >= 2
                spooled = [orjson.loads(line)["payload"] for line in gw.runtime.spool.path.read_bytes().splitlines()]
                assert {(r["tenant"], r["policy_version"], r["error"]) for r in spooled} == {
                    ("acme", gw.runtime.policies.current.version, "POLICY_UNAVAILABLE")}
                # And counted where operators look.
                metrics = urllib.request.urlopen(f"{gw.base}/metrics").read().decode()
                assert 'p402_decisions_total{deny_code="POLICY_UNAVAILABLE",outcome="unavailable"} 3.0' in metrics
                # And readiness says so, for the load balancer.
                with pytest.raises(urllib.error.HTTPError) as ready:
                    urllib.request.urlopen(f"{gw.base}/readyz")
                assert ready.value.code == 503 and ready.value.read() == b'{"status":"store unavailable"}'  # no address
                ready.value.close()
                # Anyone can send keys nobody can look up now: each is refused and counted, but only
                # a bounded number are kept, so junk cannot fill the spool that settlements need.
                kept = gw.runtime.spool.pending()
                with openai.OpenAI(base_url=f"{gw.base}/v1", api_key="junk", max_retries=0) as junk:
                    for i in range(60):
                        with pytest.raises(openai.APIStatusError) as err:
                            junk.with_options(api_key=f"junk-{i}").models.list()
                        assert err.value.status_code == 503
                assert kept == 3 and gw.runtime.spool.pending() == 5  # the burst of five, then none
                metrics = urllib.request.urlopen(f"{gw.base}/metrics").read().decode()
                assert 'p402_decisions_total{deny_code="POLICY_UNAVAILABLE",outcome="unavailable"} 63.0' in metrics
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

def test_refusals_leave_room_in_a_full_spool_for_settlements(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "MAX_SPOOL_BYTES", 4000)
    monkeypatch.setattr(spool_module, "MAX_REFUSAL_BYTES", 3000)
    spool = FileSpool(tmp_path / "p.spool.jsonl")
    refusal = {"event_id": "evt_x", "kind": "decision", "reason": "r" * 200}
    for _ in range(40):
        spool.add("record", refusal)
    refused = spool.pending()
    assert 10 <= refused < 40 and spool.path.stat().st_size <= 3000 + 400  # refusals stopped at their share
    spool.add("settle", {"hold_id": "hold_x", "cost_nanos": 5, "entry": {"kind": "settle"}})
    assert spool.pending() == refused + 1  # a settlement still fits
    assert orjson.loads(spool.path.read_bytes().splitlines()[-1])["op"] == "settle"


def test_each_database_has_its_own_spool() -> None:
    # Refusals replay into the store that refused them, never into another a gateway was pointed at.
    assert default_spool_path("sqlite:///./data/p402.db?busy_timeout_ms=50") == "data/p402.spool.jsonl"
    one = default_spool_path("postgresql://p402:secret@db-a/p402")
    other = default_spool_path("postgresql://p402:secret@db-b/p402")
    assert one != other and one.endswith(".spool.jsonl") and "secret" not in one
