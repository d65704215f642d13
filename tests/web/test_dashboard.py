"""The live cost dashboard (SPEC §7): a real gateway, real HTTP, a real headless Chromium.

What a finance reader relies on: tiles show the money on record, a request moves
its tile and a denial appears without reloading, hostile strings show as text,
the stream carries every ledger row, and nothing is visible without a token.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from p402.core.ids import new_id
from p402.pipeline.records import iso, policy_entry
from p402.stores.sqlite import SqliteStore
from p402.web import dashboard
from p402.web.dashboard_feed import LedgerFeed
from tests.gatewaykit import pg_database
from tests.web.dashboard_gateway import (ADMIN_TOKEN, VIEWER_TOKEN, XSS_MODEL, DashboardGateway, dashboard_config,
                                         usd_text)
from tests.web.dashboard_sse import END, SseClient

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
UI_TIMEOUT_MS = 15000


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[DashboardGateway]:
    gw = DashboardGateway(dashboard_config(tmp_path)).start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store: a SQLite file, or a PostgreSQL database of its own (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'p402.db'}"
        return
    with pg_database("p402_dash") as url:
        yield url


def wait_until(condition: Callable[[], bool], limit_s: float = 15.0) -> bool:
    """Poll a condition that another thread makes true; a liveness bound, not a timing assertion."""
    stop = threading.Event()
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        stop.wait(0.05)
    return True


def cost(answer: Any) -> Decimal:
    assert answer.status == 200, answer.body
    return Decimal(answer.headers["x-p402-cost-usd"])


def replica_denial(department: str, reason: str, customer: str = "c1") -> dict[str, Any]:
    """A denial as another replica (or another p402 version) writes it to the shared ledger."""
    now = datetime.now(timezone.utc)
    return {"event_id": new_id("evt", now), "ts": iso(now), "kind": "decision", "outcome": "deny", "tenant": "acme",
            "key": "k-replica", "department": department, "employee": "mallory", "workflow": None,
            "customer": customer, "project": None, "feature": None, "route": "chat", "model": "gpt-4o-mini",
            "provider": "simulated", "deny_code": "ATTRIBUTION_REQUIRED", "reason": reason,
            "recovery": {"action": "add_attribution", "detail": "send X-P402-Project", "header": "X-P402-Project"},
            "binding": None, "policy_version": 1, "hold_id": None, "flags": []}


def write_from_replica(store_url: str, entry: dict[str, Any]) -> int:
    """Append a row through a second store instance on the same data, as another replica would."""
    async def write() -> int:
        if store_url.startswith("sqlite:///"):
            store: Any = SqliteStore.from_url(store_url)
        else:
            from p402.stores.postgres import PostgresStore
            store = await PostgresStore.connect(store_url, pool_size=1)
        try:
            return int(await store.record(entry))
        finally:
            await store.close()
    # On a thread of its own: Playwright's sync API keeps an event loop running on the test's thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, write()).result(30)


# -- access -----------------------------------------------------------------------------------------------


def test_every_dashboard_route_refuses_a_missing_or_wrong_token(gateway: DashboardGateway) -> None:
    page = gateway.request("GET", "/dashboard")
    assert page.status == 401
    assert page.headers["content-type"].startswith("text/html")
    assert b"/dashboard?token=" in page.body and b"Authorization: Bearer" in page.body
    for path in ("/dashboard/api/snapshot", "/dashboard/stream", "/dashboard/api/snapshot?token=wrong-token-000000"):
        answer = gateway.request("GET", path)
        assert answer.status == 401, path
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]["code"] == "unauthenticated"
    assert gateway.request("GET", "/dashboard", headers={"Authorization": "Bearer not-a-token-0000000"}).status == 401


def test_any_role_may_view_by_header_or_query_and_the_page_is_locked_down(gateway: DashboardGateway) -> None:
    by_header = gateway.request("GET", "/dashboard", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    by_query = gateway.request("GET", f"/dashboard?token={ADMIN_TOKEN}")
    for answer in (by_header, by_query):
        assert answer.status == 200
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "default-src 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert b"<script src=" in by_query.body and b"<script>" not in by_query.body  # the script is a file
    script = gateway.request("GET", "/dashboard/static/dashboard.js")
    assert script.status == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    assert b"innerHTML" not in script.body  # the DOM is built with textContent only
    assert gateway.request("GET", "/dashboard/static/nope.js").status == 404


# -- snapshot -------------------------------------------------------------------------------------------------


def test_snapshot_tiles_carry_the_money_on_record(gateway: DashboardGateway) -> None:
    spent = cost(gateway.chat("alice")) + cost(gateway.chat("alice"))
    denied = gateway.chat("carol", model="gpt-4o")
    assert denied.status == 403 and denied.headers["x-p402-deny-code"] == "CATEGORY_DENIED"

    snap = gateway.request("GET", "/dashboard/api/snapshot", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}).json()
    tiles = {t["department"]: t for t in snap["departments"]}
    assert list(tiles) == ["eng", "research", "sales"]  # every declared department, quiet ones too
    assert Decimal(tiles["eng"]["settled_usd"]) == spent
    assert tiles["eng"]["cap_usd"] == "5000.00" and tiles["eng"]["requests"] == 2
    assert Decimal(tiles["eng"]["remaining_usd"]) == Decimal("5000") - spent
    assert Decimal(tiles["research"]["settled_usd"]) == 0 and "cap_usd" not in tiles["research"]
    assert tiles["sales"]["denied"] == 1 and tiles["sales"]["cap_usd"] == "0.001"
    assert Decimal(snap["totals"]["settled_usd"]) == spent
    assert snap["totals"]["tenant_budget"]["cap_usd"] == "50000.00"
    [denial] = snap["denials"]
    assert denial["deny_code"] == "CATEGORY_DENIED" and denial["employee"] == "carol"
    assert denial["recovery"]["action"] == "use_allowed_model" and "gpt-4o" in denial["reason"]
    assert snap["last_seq"] == gateway.ledger_seqs(0)[-1]


# -- stream -------------------------------------------------------------------------------------------------


def test_the_stream_carries_every_ledger_row_once_in_order(tmp_path: Path, store_url: str) -> None:
    gw = DashboardGateway(dashboard_config(tmp_path, store_url)).start()
    sse = None
    try:
        head = gw.ledger_seqs(0)[-1]
        sse = SseClient(f"{gw.base}/dashboard/stream?token={ADMIN_TOKEN}")
        assert sse.status == 200 and sse.headers["content-type"].startswith("text/event-stream")
        assert sse.next().event == "tiles"  # the first frame: current tiles, before any row

        spent = sum((cost(gw.chat("alice")) for _ in range(3)), Decimal(0))
        assert gw.chat("carol", model="gpt-4o").headers["x-p402-deny-code"] == "CATEGORY_DENIED"
        assert gw.chat("carol", max_tokens=4000).headers["x-p402-deny-code"] == "BUDGET_EXCEEDED"
        assert gw.chat("alice", model=XSS_MODEL).headers["x-p402-deny-code"] == "PRICE_UNKNOWN"
        assert gw.admin("PATCH", "/admin/v1/budgets/eng-month", {"cap_usd": "6000"}).status == 200
        write_from_replica(store_url, replica_denial("research", "written by another replica"))

        expected = gw.ledger_seqs(head)
        assert len(expected) == 3 * 2 + 3 + 1 + 1  # decision + settle per admit, three denials, policy, replica
        seen: list[int] = []
        tiles: list[dict[str, Any]] = []
        while not seen or seen[-1] < expected[-1]:
            event = sse.next()
            assert event is not END
            if event.event == "ledger":
                assert event.json()["seq"] == int(event.id or 0)
                seen.append(int(event.id or 0))
            elif event.event == "tiles":
                tiles.append(event.json())
        assert seen == expected

        # Tiles follow the rows: a push comes that shows all the spend, the new cap and the other
        # replica's denial (each push is a snapshot; one may come between the rows), and none is wrong.
        while True:
            by_dept = {t["department"]: t for t in tiles[-1]["departments"]} if tiles else {}
            eng, research = by_dept.get("eng"), by_dept.get("research")
            assert eng is None or Decimal(eng["settled_usd"]) <= spent
            if (eng and Decimal(eng["settled_usd"]) == spent and eng["cap_usd"] == "6000.00"
                    and research and research["denied"] == 1):
                break
            tiles.append(sse.next_of("tiles").json())
    finally:
        if sse is not None:
            sse.close()
        gw.stop()


def test_a_reconnecting_browser_resumes_after_its_last_event_id(gateway: DashboardGateway) -> None:
    for _ in range(3):
        cost(gateway.chat("alice"))
    seqs = gateway.ledger_seqs(0)
    sse = SseClient(f"{gateway.base}/dashboard/stream", {"Authorization": f"Bearer {ADMIN_TOKEN}",
                                                          "Last-Event-ID": str(seqs[-4])})
    try:
        replayed = [int(sse.next_of("ledger").id or 0) for _ in range(3)]
        assert replayed == seqs[-3:]
        cost(gateway.chat("alice"))
        live = [int(sse.next_of("ledger").id or 0) for _ in range(2)]
        assert live == [seqs[-1] + 1, seqs[-1] + 2]
    finally:
        sse.close()
    # Closing the tab unsubscribes it: nothing keeps buffering for a browser that left.
    feed = gateway.app.dashboard.state.feed
    assert wait_until(lambda: not feed.subscribers), "the stream kept its subscriber after the client hung up"


@pytest.mark.parametrize("last_event_id", ["\u00b2", "9" * 5000, "-3", "abc"])
def test_a_last_event_id_that_is_not_a_seq_replays_nothing_and_streams_on(gateway: DashboardGateway,
                                                                          last_event_id: str) -> None:
    cost(gateway.chat("alice"))
    sse = SseClient(f"{gateway.base}/dashboard/stream", {"Authorization": f"Bearer {ADMIN_TOKEN}",
                                                          "Last-Event-ID": last_event_id})
    try:
        assert sse.next_of("tiles").json()["departments"]  # the stream opened (not a 500)
        cost(gateway.chat("alice"))
        assert int(sse.next_of("ledger").id or 0) > max(gateway.ledger_seqs(0)) - 2  # live rows, no replay
    finally:
        sse.close()


def test_an_idle_stream_sends_heartbeats(gateway: DashboardGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "HEARTBEAT_S", 0.1)  # 15 s in production; the stream reads it each tick
    sse = SseClient(f"{gateway.base}/dashboard/stream?token={VIEWER_TOKEN}")
    try:
        assert sse.next().event == "tiles"
        assert wait_until(lambda: sse.comments >= 1, limit_s=5), "no heartbeat comment on an idle stream"
    finally:
        sse.close()


def test_a_slow_subscriber_loses_its_oldest_rows_and_never_holds_up_the_feed(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(str(tmp_path / "feed.db"))

        async def no_tiles() -> dict[str, Any]:
            return {}
        feed = LedgerFeed(store, no_tiles, interval_s=3600)  # the test polls by hand
        tasks: list[asyncio.Task[None]] = []
        fast = await feed.subscribe(start=tasks.append, buffer=5000)
        slow = await feed.subscribe(buffer=10)
        now = datetime.now(timezone.utc)
        for i in range(1200):  # more than two store pages (500 rows each)
            await store.record(policy_entry(new_id("evt", now), now, "acme", "update", "budget", f"b{i}", "t", None, {}))
        assert await feed.poll_once()

        frames = fast.take()
        ids = [int(f.split(b"\n", 1)[0].removeprefix(b"id: ")) for f in frames]
        assert ids == list(range(1, 1201))
        lagging = slow.take()
        assert lagging[0].startswith(b"event: dropped\ndata: {\"count\":1190}")
        assert [int(f.split(b"\n", 1)[0].removeprefix(b"id: ")) for f in lagging[1:]] == list(range(1191, 1201))

        feed.close()
        assert fast.closed and slow.closed
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()
    asyncio.run(main())


def test_an_open_stream_ends_when_the_server_stops(tmp_path: Path) -> None:
    gw = DashboardGateway(dashboard_config(tmp_path)).start()
    sse = SseClient(f"{gw.base}/dashboard/stream?token={ADMIN_TOKEN}")
    try:
        assert sse.next().event == "tiles"
        feed = gw.app.dashboard.state.feed
        gw.stop()
        assert not gw.thread.is_alive(), "an open dashboard stream kept the server from shutting down"
        assert sse.next_of("<end>").event == END.event
        assert feed.closed and all(t.done() for t in gw.runtime.tasks)
    finally:
        sse.close()


# -- the page in a real browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=UI_TIMEOUT_MS)  # a 2-core CI box paints slower than a laptop
    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield b
    finally:
        b.close()
        pw.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    p = context.new_page()
    p.set_default_timeout(UI_TIMEOUT_MS)
    p.dialogs = []  # type: ignore[attr-defined]
    p.on("dialog", lambda d: (p.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    try:
        yield p
    finally:
        context.close()


def tile_value(page: Any, department: str, field: str) -> Any:
    return page.locator(f'.tile[data-department="{department}"] .v.{field}')


def test_tiles_render_and_move_live_and_denials_arrive_without_reload(gateway: DashboardGateway, page: Any,
                                                                      tmp_path: Path) -> None:
    from playwright.sync_api import expect
    spent = cost(gateway.chat("alice")) + cost(gateway.chat("alice"))
    gateway.chat("carol", model="gpt-4o")

    page.goto(f"{gateway.base}/dashboard?token={ADMIN_TOKEN}")
    expect(tile_value(page, "eng", "settled-usd")).to_have_text(usd_text(spent))
    expect(tile_value(page, "eng", "cap-usd")).to_have_text("$5,000.00")
    expect(tile_value(page, "eng", "remaining-usd")).to_have_text(usd_text(Decimal(5000) - spent))
    expect(tile_value(page, "sales", "cap-usd")).to_have_text("$0.001")
    expect(tile_value(page, "research", "settled-usd")).to_have_text("$0.00")
    expect(page.locator("#t-settled")).to_have_text(usd_text(spent))
    expect(page.locator("#t-requests")).to_have_text("2")
    expect(page.locator("#t-denied")).to_have_text("1")
    expect(page.locator("#feed tr")).to_have_count(1)
    expect(page.locator("#feed tr").first.locator(".badge")).to_have_text("CATEGORY_DENIED")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    page.evaluate("window.__sameDocument = 42")

    spent += cost(gateway.chat("alice"))
    expect(tile_value(page, "eng", "settled-usd")).to_have_text(usd_text(spent))
    expect(page.locator("#t-requests")).to_have_text("3")
    assert gateway.chat("carol", max_tokens=4000).headers["x-p402-deny-code"] == "BUDGET_EXCEEDED"
    newest = page.locator("#feed tr").first
    expect(newest.locator(".badge")).to_have_text("BUDGET_EXCEEDED")
    expect(newest.locator(".recovery .action")).to_have_text("reduce_max_tokens")
    expect(newest.locator(".primary")).to_have_text("carol")
    expect(newest.locator(".model")).to_have_text("gpt-4o-mini")
    expect(newest.locator(".reason")).to_contain_text("department:sales monthly budget would be exceeded")
    expect(page.locator("#feed tr")).to_have_count(2)
    expect(tile_value(page, "sales", "counts")).to_have_text("0 · 2")
    assert page.evaluate("window.__sameDocument") == 42  # pushed over SSE, not reloaded

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("P402_DASHBOARD_SCREENSHOT"):
        shutil.copy(shot, os.environ["P402_DASHBOARD_SCREENSHOT"])


def test_hostile_strings_show_as_text_and_execute_nothing(gateway: DashboardGateway, page: Any,
                                                          tmp_path: Path) -> None:
    from playwright.sync_api import expect
    page.goto(f"{gateway.base}/dashboard?token={ADMIN_TOKEN}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")

    hostile_dept = '<img src=x onerror="window.__xss=1">'
    hostile_reason = '<script>window.__xss=2</script><b>bold</b>'
    header_attempt = gateway.chat("alice", headers={"X-P402-Project": '<svg onload="window.__xss=3">'})
    assert header_attempt.status in (400, 403)  # attribution ids are validated at the edge
    assert gateway.chat("alice", model=XSS_MODEL).headers["x-p402-deny-code"] == "PRICE_UNKNOWN"
    store_url = gateway.runtime.config.store
    write_from_replica(store_url, replica_denial(hostile_dept, hostile_reason, customer="<i>cust</i>"))

    def check() -> None:
        rows = page.locator("#feed tr")
        expect(rows.locator(".model", has_text=XSS_MODEL)).to_have_count(1)
        expect(rows.locator(".reason", has_text=hostile_reason)).to_have_count(1)
        expect(rows.locator(".tags", has_text="customer <i>cust</i>")).to_have_count(1)
        expect(page.locator(".tile .name", has_text=hostile_dept)).to_have_count(1)
        assert page.locator(".tile").evaluate_all("ts => ts.map(t => t.dataset.department)").count(hostile_dept) == 1
        assert page.locator("img, svg, b, i").count() == 0  # nothing parsed as markup
        assert page.locator("script").count() == 1  # only the page's own script file
        assert page.evaluate("window.__xss") is None
        assert page.dialogs == []

    check()  # arrived live over the stream
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    check()  # and from the first-paint snapshot
