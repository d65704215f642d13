"""The admin API over real HTTP: roles, budgets, keys, spend, ledger queries and the OpenAPI document.

Every test runs the real gateway (uvicorn on loopback, a real SQLite file) and talks
to `/admin/v1` with urllib, as an operator's script would; client traffic goes
through the official OpenAI SDK. The ledger is read back through a separate SQLite
connection, as an auditor would.
"""

from __future__ import annotations

import sqlite3
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.gatewaykit import (ADMIN_TOKEN, FINANCE_TOKEN, SECRETS, VIEWER_TOKEN, Running, config_of, counter_rows,
                              gateway, org)

PROMPT = [{"role": "user", "content": "Summarise the quarterly cloud bill in one line."}]
_NO_BODY = object()


def call(gw: Running, method: str, path: str, token: str | None = ADMIN_TOKEN, body: Any = _NO_BODY,
         raw: bytes | None = None) -> tuple[int, Any]:
    """One admin request; returns (status, parsed JSON body)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (None if body is _NO_BODY else orjson.dumps(body))
    req = urllib.request.Request(f"{gw.base}/admin/v1{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, orjson.loads(err.read())


def ledger(db: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as c:
        return [orjson.loads(r[0]) for r in c.execute("SELECT body FROM ledger ORDER BY seq")]


def policy_rows(db: str, object_id: str) -> list[dict[str, Any]]:
    return [r for r in ledger(db) if r["kind"] == "policy" and r["object_id"] == object_id]


def ask(gw: Running, who: str = "alice", model: str = "gpt-4o-mini", max_tokens: int = 5) -> Any:
    """One chat completion through the OpenAI SDK; returns the raw response (headers + parsed body)."""
    return gw.openai(who).chat.completions.with_raw_response.create(model=model, messages=PROMPT,
                                                                    max_tokens=max_tokens)


ENG_BUDGET = {"id": "eng-month", "scope": "department:eng", "cap_usd": "5", "period": "month"}


def test_every_route_needs_a_known_admin_token(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path))) as gw:
        for path in ("/budgets", "/keys", "/spend", "/ledger/events", "/openapi.json"):
            status, body = call(gw, "GET", path, token=None)
            assert (status, body["error"]["code"]) == (401, "unauthenticated"), path
            assert "Authorization: Bearer" in body["error"]["message"]
            status, body = call(gw, "GET", path, token="not-a-token-of-this-gateway")
            assert (status, body["error"]["code"]) == (401, "unauthenticated"), path
        # A client API key is not an admin token, and the admin API never takes tokens from URLs
        # (they end up in access logs); only the dashboard does, for the browser's EventSource.
        assert call(gw, "GET", "/budgets", token=SECRETS["alice"])[0] == 401
        assert call(gw, "GET", f"/budgets?token={ADMIN_TOKEN}", token=None)[0] == 401
        assert call(gw, "POST", "/budgets", token=None, body=ENG_BUDGET)[0] == 401
        assert call(gw, "GET", "/budgets/eng-month")[0] == 404  # nothing was created
        # Routes and methods that do not exist answer in the same JSON envelope as everything else.
        status, body = call(gw, "GET", "/no-such-route")
        assert (status, body["error"]["code"]) == (404, "not_found") and "/no-such-route" in body["error"]["message"]
        status, body = call(gw, "PUT", "/budgets")
        assert (status, body["error"]["code"]) == (405, "method_not_allowed")
        status, body = call(gw, "POST", "/budgets", raw=b'{"id": "' + b"x" * 2_000_000 + b'"}')
        assert (status, body["error"]["code"]) == (413, "request_too_large")


def unowned(tmp_path: Path) -> dict[str, Any]:
    """The test organisation with no owner on eng: its budgets are the admin API's to raise and delete."""
    raw = org(tmp_path)
    raw["departments"] = [{k: v for k, v in d.items() if k != "owner"} for d in raw["departments"]]
    return raw


def test_viewer_reads_finance_changes_budgets_admin_changes_keys(tmp_path: Path) -> None:
    with gateway(config_of(unowned(tmp_path))) as gw:
        for path in ("/budgets", "/keys", "/spend", "/ledger/events", "/openapi.json"):
            assert call(gw, "GET", path, token=VIEWER_TOKEN)[0] == 200, path
            head = urllib.request.Request(f"{gw.base}/admin/v1{path}", method="HEAD",
                                          headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
            with urllib.request.urlopen(head) as resp:  # a HEAD reads, as its GET does
                assert resp.status == 200 and resp.read() == b"", path

        for method, path, body in [("POST", "/budgets", ENG_BUDGET), ("PATCH", "/budgets/acme-month", {"cap_usd": "1"}),
                                   ("DELETE", "/budgets/acme-month", _NO_BODY), ("POST", "/keys", {"employee": "bob"}),
                                   ("POST", "/keys/k-bob/revoke", _NO_BODY)]:
            status, err = call(gw, method, path, token=VIEWER_TOKEN, body=body)
            assert (status, err["error"]["code"]) == (403, "forbidden"), (method, path)
            assert "viewer" in err["error"]["message"]

        assert call(gw, "POST", "/budgets", token=FINANCE_TOKEN, body=ENG_BUDGET)[0] == 201
        assert call(gw, "PATCH", "/budgets/eng-month", token=FINANCE_TOKEN, body={"cap_usd": "7"})[0] == 200
        assert call(gw, "DELETE", "/budgets/eng-month", token=FINANCE_TOKEN)[0] == 200
        for method, path, body in [("POST", "/keys", {"employee": "bob"}), ("POST", "/keys/k-bob/revoke", _NO_BODY)]:
            status, err = call(gw, method, path, token=FINANCE_TOKEN, body=body)
            assert (status, err["error"]["message"]) == (403, "role finance may not change keys"), (method, path)

        # The refused writes changed nothing: acme-month is as configured and k-bob still works.
        assert call(gw, "GET", "/budgets/acme-month", token=VIEWER_TOKEN)[1]["cap_usd"] == "1000.00"
        assert ask(gw, "bob").parse().choices

        assert call(gw, "POST", "/keys", body={"employee": "bob"})[0] == 201
        assert call(gw, "POST", "/keys/k-bob/revoke")[0] == 200
        actors = {r["actor"] for r in ledger(gw.db_path) if r["kind"] == "policy" and r["object_id"] == "eng-month"}
        assert actors == {"admin:finance"}


def test_an_owned_budget_can_be_tightened_but_only_its_owner_raises_or_lifts_it(tmp_path: Path) -> None:
    # eng's owner owns eng's budgets (SPEC §6: "Nobody else can raise a budget").
    with gateway(config_of(org(tmp_path))) as gw:
        assert call(gw, "POST", "/budgets", body={**ENG_BUDGET, "cap_usd": "0.000001"})[0] == 201
        with pytest.raises(openai.APIStatusError) as denied:
            ask(gw)
        assert denied.value.status_code == 402
        for token in (ADMIN_TOKEN, FINANCE_TOKEN):
            for change, param in [({"cap_usd": "5"}, "cap_usd"), ({"mode": "shadow"}, "mode"),
                                  ({"scope": "department:sales"}, "scope"), ({"period": "year"}, "period"),
                                  ({"owner": "0x" + "ab" * 20}, "owner")]:
                status, err = call(gw, "PATCH", "/budgets/eng-month", token=token, body=change)
                assert (status, err["error"]["code"], err["error"]["param"]) == (403, "owner_only", param), change
                assert "belongs to 0x00000000000000000000000000000000000000e9" in err["error"]["message"]
            status, err = call(gw, "DELETE", "/budgets/eng-month", token=token)
            assert (status, err["error"]["code"]) == (403, "owner_only")
        with pytest.raises(openai.APIStatusError):  # nothing was raised or lifted
            ask(gw)
        # Tightening needs no owner: lower the cap, require a mandate.
        assert call(gw, "PATCH", "/budgets/eng-month", token=FINANCE_TOKEN, body={"cap_usd": "0.0000001"})[0] == 200
        status, err = call(gw, "PATCH", "/budgets/eng-month", body={"requires_mandate": True})
        assert status == 200 and err["requires_mandate"] is True
        status, err = call(gw, "PATCH", "/budgets/eng-month", body={"requires_mandate": False})
        assert (status, err["error"]["param"]) == (403, "requires_mandate")
        # A budget naming its own owner is protected the same way, whatever its department.
        owned = {"id": "sales-month", "scope": "department:sales", "cap_usd": "1", "period": "month",
                 "owner": "0x" + "cd" * 20}
        assert call(gw, "POST", "/budgets", body=owned)[0] == 201
        assert call(gw, "PATCH", "/budgets/sales-month", body={"cap_usd": "2"})[0] == 403
        assert [r["action"] for r in policy_rows(gw.db_path, "eng-month")] == ["create", "update", "update"]


def test_budget_create_get_patch_delete_and_the_gateway_enforces_each_change(tmp_path: Path) -> None:
    with gateway(config_of(unowned(tmp_path))) as gw:
        status, created = call(gw, "POST", "/budgets", body=ENG_BUDGET)
        assert status == 201
        assert created["id"] == "eng-month" and created["cap_usd"] == "5.00" and created["scope"] == "department:eng"
        assert created["settled_usd"] == "0.0000" and created["remaining_usd"] == "5.0000"

        status, err = call(gw, "POST", "/budgets", body={**ENG_BUDGET, "cap_usd": "9"})
        assert (status, err["error"]["code"], err["error"]["param"]) == (409, "conflict", "id")
        assert "PATCH /admin/v1/budgets/eng-month" in err["error"]["message"]

        cost = Decimal(ask(gw).headers["X-P402-Cost-Usd"])
        status, one = call(gw, "GET", "/budgets/eng-month", token=VIEWER_TOKEN)
        assert status == 200 and Decimal(one["settled_usd"]) == cost
        assert Decimal(one["remaining_usd"]) == Decimal("5") - cost

        # Lower the cap below one request: the very next request is refused by this budget.
        status, patched = call(gw, "PATCH", "/budgets/eng-month", body={"cap_usd": "0.000001"})
        assert status == 200 and patched["cap_usd"] == "0.000001" and patched["period"] == "month"
        with pytest.raises(openai.APIStatusError) as denied:
            ask(gw)
        assert denied.value.status_code == 402
        assert denied.value.body["p402"]["budget"]["id"] == "eng-month"
        assert denied.value.body["p402"]["budget"]["cap_usd"] == "0.000001"
        assert ask(gw, "carol").parse().choices  # sales is not under the eng budget

        # Raise it again: admitted again, immediately.
        assert call(gw, "PATCH", "/budgets/eng-month", body={"cap_usd": "5"})[0] == 200
        assert ask(gw).parse().choices

        status, err = call(gw, "PATCH", "/budgets/eng-month", body={"id": "other"})
        assert (status, err["error"]["param"]) == (400, "id")
        status, err = call(gw, "PATCH", "/budgets/eng-month", body={"period": "fortnight"})
        assert (status, err["error"]["param"]) == (400, "period")
        assert call(gw, "PATCH", "/budgets/nope", body={"cap_usd": "1"})[0] == 404

        # Tighten, then delete: a deleted budget binds nobody.
        assert call(gw, "PATCH", "/budgets/eng-month", body={"cap_usd": "0.000001"})[0] == 200
        status, gone = call(gw, "DELETE", "/budgets/eng-month")
        assert status == 200 and gone == {"id": "eng-month", "deleted": True}
        assert call(gw, "GET", "/budgets/eng-month")[0] == 404
        assert call(gw, "DELETE", "/budgets/eng-month")[0] == 404
        assert ask(gw).parse().choices
        assert "eng-month" not in {b["id"] for b in call(gw, "GET", "/budgets")[1]["data"]}

        rows = policy_rows(gw.db_path, "eng-month")
        assert [r["action"] for r in rows] == ["create", "update", "update", "update", "delete"]
        assert all(r["actor"] == "admin:admin" and r["object"] == "budget" for r in rows)
        assert rows[0]["before"] is None and rows[0]["after"]["cap_usd"] == "5.00"
        assert [(r["before"]["cap_usd"], r["after"]["cap_usd"]) for r in rows[1:4]] == [
            ("5.00", "0.000001"), ("0.000001", "5.00"), ("5.00", "0.000001")]
        assert rows[4]["before"]["cap_usd"] == "0.000001" and rows[4]["after"] is None
        # Each change is a new policy version, and later decisions say which one they were made under.
        versions = [r["policy_version"] for r in rows]
        assert versions == sorted(versions) and len(set(versions)) == len(versions)
        last_decision = [r for r in ledger(gw.db_path) if r["kind"] == "decision"][-1]
        assert last_decision["policy_version"] == versions[-1]


BAD_BUDGETS = [  # (payload, the field error.param names, words the message must contain)
    ({**ENG_BUDGET, "cap_usd": 0.5}, "cap_usd", "quoted decimal string"),
    ({**ENG_BUDGET, "cap_usd": "-3"}, "cap_usd", "negative"),
    ({**ENG_BUDGET, "period": "fortnight"}, "period", "'fortnight' is not one of hour"),
    ({**ENG_BUDGET, "scope": "galaxy:far"}, "scope", "scope kind 'galaxy'"),
    ({**ENG_BUDGET, "scope": "eng"}, "scope", "kind:id"),
    ({**ENG_BUDGET, "mode": "loud"}, "mode", "enforce or shadow"),
    ({**ENG_BUDGET, "per": "planet"}, "per", "'planet' is not one of"),
    ({**ENG_BUDGET, "colour": "red"}, "colour", "unknown key"),
    ({k: v for k, v in ENG_BUDGET.items() if k != "cap_usd"}, "cap_usd", "is required"),
]


def test_a_bad_budget_is_a_400_naming_the_field(tmp_path: Path) -> None:
    # One gateway for every case: starting one per case would triple this file's run time.
    with gateway(config_of(org(tmp_path))) as gw:
        for payload, param, words in BAD_BUDGETS:
            status, err = call(gw, "POST", "/budgets", body=payload)
            assert status == 400, payload
            assert err["error"]["param"] == param and err["error"]["code"] == "invalid_request", payload
            assert param in err["error"]["message"] and words in err["error"]["message"], payload
        assert call(gw, "GET", "/budgets/eng-month")[0] == 404
        assert len(policy_rows(gw.db_path, "eng-month")) == 0


def test_a_body_that_is_not_a_json_object_is_a_400(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path))) as gw:
        status, err = call(gw, "POST", "/budgets", raw=b"{not json")
        assert (status, err["error"]["code"]) == (400, "invalid_json")
        status, err = call(gw, "POST", "/budgets", raw=b"[1, 2]")
        assert status == 400 and "JSON object" in err["error"]["message"]


def test_a_key_is_created_with_its_secret_once_works_and_is_revoked(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path))) as gw:
        status, made = call(gw, "POST", "/keys", body={"employee": "carol", "id": "k-carol-2"})
        assert status == 201
        secret = made["secret"]
        assert secret.startswith("sk-p402-") and made["id"] == "k-carol-2"
        assert (made["owner"], made["department"], made["employee"]) == ("employee:carol", "sales", "carol")

        raw = ask(gw, secret)
        assert raw.parse().choices
        decision = next(r for r in ledger(gw.db_path) if r.get("event_id") == raw.headers["X-P402-Event-Id"])
        assert (decision["key"], decision["department"], decision["employee"]) == ("k-carol-2", "sales", "carol")

        status, listed = call(gw, "GET", "/keys", token=VIEWER_TOKEN)
        assert status == 200
        assert {k["id"] for k in listed["data"]} >= {"k-alice", "k-carol", "k-carol-2"}
        text = orjson.dumps(listed).decode()
        assert secret not in text and "secret" not in text
        assert all(s not in text for s in SECRETS.values())
        # The secret is not in the ledger either; the ledger says who made the key and for whom.
        assert secret not in orjson.dumps(ledger(gw.db_path)).decode()
        created = policy_rows(gw.db_path, "k-carol-2")
        assert [(r["action"], r["actor"], r["after"]) for r in created] == [
            ("create", "admin:admin", {"owner": "employee:carol"})]

        assert call(gw, "POST", "/keys/k-carol-2/revoke")[1] == {"id": "k-carol-2", "revoked": True}
        with pytest.raises(openai.AuthenticationError):
            ask(gw, secret)
        assert ask(gw, "carol").parse().choices  # only that key was revoked
        listed = {k["id"]: k for k in call(gw, "GET", "/keys")[1]["data"]}
        assert listed["k-carol-2"]["revoked"] is True and listed["k-carol"]["revoked"] is False
        revoked = policy_rows(gw.db_path, "k-carol-2")[-1]
        assert (revoked["action"], revoked["actor"], revoked["before"], revoked["after"]) == (
            "revoke", "admin:admin", {"revoked": False}, {"revoked": True})

        assert call(gw, "POST", "/keys/k-carol-2/revoke")[0] == 409
        assert call(gw, "POST", "/keys/no-such-key/revoke")[0] == 404


BAD_KEYS = [  # (payload, status, the field error.param names)
    ({"employee": "zed"}, 400, "employee"),
    ({"department": "nowhere"}, 400, "department"),
    ({"employee": "bob", "department": "eng"}, 400, "employee"),
    ({}, 400, "employee"),
    ({"employee": "bob bob"}, 400, "employee"),
    ({"employee": "bob", "id": "has space"}, 400, "id"),
    ({"employee": "bob", "id": "k-alice"}, 409, "id"),
    ({"employee": "bob", "id": ""}, 400, "id"),  # not silently replaced by a generated id
    ({"employee": "bob", "id": 0}, 400, "id"),
    ({"employee": "bob", "secret": "sk-mine"}, 400, "secret"),  # secrets are made by the gateway, never sent
]


def test_a_bad_key_request_names_the_field(tmp_path: Path) -> None:
    with gateway(config_of(org(tmp_path))) as gw:
        for payload, status, param in BAD_KEYS:
            got, err = call(gw, "POST", "/keys", body=payload)
            assert (got, err["error"]["param"]) == (status, param), payload
        assert len(call(gw, "GET", "/keys")[1]["data"]) == 5


def test_spend_reports_what_was_settled(tmp_path: Path) -> None:
    budgets = [{"id": "acme-month", "scope": "tenant:acme", "cap_usd": "1000", "period": "month"},
               {"id": "eng-month", "scope": "department:eng", "cap_usd": "100", "period": "month"}]
    raw = org(tmp_path, budgets, policies=[{"scope": "department:sales", "deny_categories": ["premium"]}])
    with gateway(config_of(raw)) as gw:
        costs: dict[str, list[Decimal]] = {"eng": [], "sales": [], "support": []}
        for who, dept, max_tokens in [("alice", "eng", 5), ("bob", "eng", 20), ("alice", "eng", 9),
                                      ("carol", "sales", 7), ("bot", "support", 3)]:
            costs[dept].append(Decimal(ask(gw, who, max_tokens=max_tokens).headers["X-P402-Cost-Usd"]))
        with pytest.raises(openai.PermissionDeniedError):
            ask(gw, "carol", model="gpt-4o")

        status, report = call(gw, "GET", "/spend?group_by=department&period=month", token=VIEWER_TOKEN)
        assert status == 200 and report["group_by"] == "department" and report["period"] == "month"
        rows = {r["department"]: r for r in report["data"]}
        assert set(rows) == {"eng", "sales", "support"}
        for dept, paid in costs.items():
            assert Decimal(rows[dept]["settled_usd"]) == sum(paid), dept
            assert rows[dept]["requests"] == len(paid) and Decimal(rows[dept]["reserved_usd"]) == 0
        assert rows["sales"]["denied"] == 1 and rows["eng"]["denied"] == 0
        eng = rows["eng"]
        assert eng["budget_id"] == "eng-month" and eng["cap_usd"] == "100.00"
        assert Decimal(eng["remaining_usd"]) == Decimal("100") - sum(costs["eng"])

        by_employee = {r["employee"]: r for r in call(gw, "GET", "/spend?group_by=employee")[1]["data"]}
        assert Decimal(by_employee["alice"]["settled_usd"]) == costs["eng"][0] + costs["eng"][2]
        assert Decimal(by_employee["bob"]["settled_usd"]) == costs["eng"][1]
        by_model = call(gw, "GET", "/spend?group_by=model&period=total")[1]["data"]
        everything = sum(sum(v) for v in costs.values())
        assert sum(Decimal(r["settled_usd"]) for r in by_model) == everything
        assert {r["model"] for r in by_model if Decimal(r["settled_usd"])} == {"gpt-4o-mini"}

        for query, param in [("group_by=planet", "group_by"), ("period=fortnight", "period"),
                             ("period=request", "period")]:
            status, err = call(gw, "GET", f"/spend?{query}")
            assert (status, err["error"]["param"]) == (400, param), query


def test_ledger_events_filter_page_and_tell_one_requests_story(tmp_path: Path) -> None:
    raw = org(tmp_path, policies=[{"scope": "department:sales", "deny_categories": ["premium"]}])
    with gateway(config_of(raw)) as gw:
        allowed = ask(gw, "alice").headers["X-P402-Event-Id"]
        ask(gw, "carol")
        denied_ids = []
        for _ in range(2):
            with pytest.raises(openai.PermissionDeniedError) as err:
                ask(gw, "carol", model="gpt-4o")
            denied_ids.append(err.value.response.headers["X-P402-Event-Id"])

        status, page = call(gw, "GET", "/ledger/events?deny_code=CATEGORY_DENIED", token=VIEWER_TOKEN)
        assert status == 200
        assert [r["event_id"] for r in page["data"]] == denied_ids[::-1]  # newest first
        assert all(r["deny_code"] == "CATEGORY_DENIED" and r["hash"] for r in page["data"])

        sales = call(gw, "GET", "/ledger/events?scope=department:sales")[1]["data"]
        assert len(sales) == 4 and {r["department"] for r in sales} == {"sales"}  # 2 denials, a decision, a settle
        alice = call(gw, "GET", "/ledger/events?scope=employee:alice")[1]["data"]
        assert {r["event_id"] for r in alice} == {allowed}

        everything = call(gw, "GET", "/ledger/events?limit=1000")[1]["data"]
        assert len(everything) == len(ledger(gw.db_path))
        assert call(gw, "GET", "/ledger/events?since=2999-01-01T00:00:00Z")[1]["data"] == []
        cut = everything[1]["ts"]  # the second-newest row's time
        recent = call(gw, "GET", f"/ledger/events?since={cut}")[1]["data"]
        assert recent and all(r["ts"] >= cut for r in recent) and len(recent) < len(everything)

        first = call(gw, "GET", "/ledger/events?limit=3")[1]
        assert [r["seq"] for r in first["data"]] == [everything[i]["seq"] for i in range(3)]
        second = call(gw, "GET", f"/ledger/events?limit=3&before={first['next_before']}")[1]
        assert [r["seq"] for r in second["data"]] == [everything[i]["seq"] for i in range(3, 6)]

        for query, param in [("deny_code=NOT_A_CODE", "deny_code"), ("scope=sales", "scope"),
                             ("scope=galaxy:far", "scope"), ("since=yesterday", "since"), ("limit=0", "limit"),
                             ("limit=1001", "limit"), ("limit=ten", "limit"), ("before=abc", "before"),
                             ("before=9223372036854775808", "before"),
                             ("since=9999-12-31T23:59:59-14:00", "since")]:
            status, err = call(gw, "GET", f"/ledger/events?{query}")
            assert (status, err["error"]["param"]) == (400, param), query

        status, story = call(gw, "GET", f"/ledger/events/{allowed}", token=VIEWER_TOKEN)
        assert status == 200 and story["event_id"] == allowed
        assert [r["kind"] for r in story["rows"]] == ["decision", "settle"]
        decision, settle = story["rows"]
        assert decision["outcome"] == "allow" and settle["ref"] == allowed
        assert settle["prev_hash"] and settle["seq"] > decision["seq"]
        assert [r["kind"] for r in call(gw, "GET", f"/ledger/events/{denied_ids[0]}")[1]["rows"]] == ["decision"]
        assert call(gw, "GET", "/ledger/events/evt_nope")[0] == 404


def test_openapi_lists_exactly_the_routes_the_admin_app_serves(tmp_path: Path) -> None:
    from p402.web.openapi import ADMIN_PATHS
    with gateway(config_of(org(tmp_path))) as gw:
        status, doc = call(gw, "GET", "/openapi.json", token=VIEWER_TOKEN)
        assert status == 200 and doc["openapi"].startswith("3.")
        documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
        served = set()
        for route in gw.app.admin.routes:
            methods = getattr(route, "methods", None)
            assert methods, f"admin route {route!r} is not a plain Route; document it in p402.web.openapi"
            served |= {("/admin/v1" + route.path, m.lower()) for m in methods if m != "HEAD"}
        assert documented == served
        assert documented == {(p, m) for p, ops in ADMIN_PATHS.items() for m in ops}
        for path, ops in doc["paths"].items():
            for op in ops.values():
                assert op["summary"] and op["security"] == [{"bearer": []}]
                assert [p["name"] for p in op.get("parameters", [])] == [
                    s.strip("{}") for s in path.split("/") if s.startswith("{")]


def test_an_hourly_spend_report_is_exact_for_a_department_with_an_hourly_budget(tmp_path: Path) -> None:
    budgets = [{"id": "eng-hour", "scope": "department:eng", "cap_usd": "100", "period": "hour"}]
    with gateway(config_of(org(tmp_path, budgets))) as gw:
        paid = Decimal(ask(gw, "alice", max_tokens=5).headers["X-P402-Cost-Usd"])
        # Earlier today, before this hour began, eng spent $7 more (as the daily rollup keeps it).
        day = int(gw.runtime.clock().timestamp()) // 86400
        counter_rows(gw.db_path)  # the spend rollups are written out (they lag the ledger by up to 0.25 s)
        with sqlite3.connect(gw.db_path) as db:
            changed = db.execute("UPDATE spend SET cost = cost + 7000000000 WHERE day=? AND department='eng'", (day,))
            assert changed.rowcount == 1
        rows = {r["department"]: r for r in call(gw, "GET", "/spend?group_by=department&period=hour")[1]["data"]}
        eng = rows["eng"]
        assert Decimal(eng["settled_usd"]) == paid  # this hour's, not the whole day's
        assert Decimal(eng["remaining_usd"]) == Decimal("100") - paid and eng["budget_id"] == "eng-hour"
