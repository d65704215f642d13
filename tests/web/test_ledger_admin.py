"""The ledger as evidence through the admin API: signed checkpoints, explained events with proofs, exports."""

from __future__ import annotations

import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from p402.prove.export import verify_export
from p402.prove.merkle import verify_consistency, verify_inclusion
from tests.gatewaykit import ADMIN_TOKEN, VIEWER_TOKEN, config_of, gateway, org, pg_database


def _checkpointer_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "p402-sqlite-checkpoint")

PROMPT = [{"role": "user", "content": "hello"}]


def get(base: str, path: str, token: str = ADMIN_TOKEN) -> tuple[int, bytes]:
    return fetch(base, path, token)[:2]


def fetch(base: str, path: str, token: str = ADMIN_TOKEN) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read(), e.headers


def test_events_are_explained_and_provably_included_in_a_signed_checkpoint(tmp_path: Path) -> None:
    raw = org(tmp_path, [{"id": "tiny", "scope": "department:eng", "cap_usd": "0.00001", "period": "day"}],
              ledger={"checkpoint_max_events": 1})  # seal as soon as anything is new
    with gateway(config_of(raw)) as gw:
        gw.openai("carol").chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        with pytest.raises(openai.APIStatusError) as denial:
            gw.openai("alice").chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=500)
        assert denial.value.status_code == 402
        denied_id = denial.value.response.headers["X-P402-Event-Id"]
        with sqlite3.connect(tmp_path / "p402.db") as db:
            last_seq = db.execute("SELECT MAX(seq) FROM ledger").fetchone()[0]
        deadline = time.time() + 10  # the gateway's sealer looks every second
        while True:
            status, body = get(gw.base, "/admin/v1/ledger/checkpoint", VIEWER_TOKEN)
            info = orjson.loads(body)
            if (info["checkpoint"] or {}).get("tree_size", 0) >= last_seq or time.time() > deadline:
                break
            time.sleep(0.2)
        sealed = info["checkpoint"]
        assert status == 200 and sealed["kind"] == "checkpoint" and len(info["public_key"]) == 64

        status, body = get(gw.base, f"/admin/v1/ledger/events/{denied_id}")
        event: dict[str, Any] = orjson.loads(body)
        assert status == 200 and "BUDGET_EXCEEDED" in event["explanation"]
        row = event["rows"][0]
        proof = row["proof"]
        assert proof["tree_size"] <= sealed["tree_size"]
        assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), proof["leaf_index"], proof["tree_size"],
                                [bytes.fromhex(h) for h in proof["audit_path"]], bytes.fromhex(proof["root"]))
        # A proof for another row's hash does not verify against the same root.
        assert not verify_inclusion(bytes.fromhex(proof["leaf_hash"]), proof["leaf_index"] - 1, proof["tree_size"],
                                    [bytes.fromhex(h) for h in proof["audit_path"]], bytes.fromhex(proof["root"]))

        assert get(gw.base, "/admin/v1/ledger/export?format=jsonl", VIEWER_TOKEN)[0] == 403
        assert get(gw.base, "/admin/v1/ledger/export?format=xml")[0] == 400
        checkpointers = _checkpointer_threads()
        status, export = get(gw.base, "/admin/v1/ledger/export?format=jsonl")
        assert status == 200
        assert _checkpointer_threads() == checkpointers  # an export leaves no thread behind
        path = tmp_path / "export.jsonl"
        path.write_bytes(export)
        report = verify_export(path, info["public_key"])
        assert report.ok and report.checkpoints >= 1 and report.rows >= 5
        lines = export.splitlines()
        tampered = [orjson.loads(line) for line in lines]
        victim = next(i for i, l in enumerate(tampered) if l.get("type") == "event" and '"deny"' in l["body"])
        tampered[victim]["body"] = tampered[victim]["body"].replace('"deny"', '"allow"')
        path.write_bytes(b"\n".join(orjson.dumps(l) for l in tampered) + b"\n")
        bad = verify_export(path, info["public_key"])
        assert not bad.ok and bad.fault is not None and bad.fault.seq == tampered[victim]["seq"]

        # Two checkpoints: the older tree is provably a prefix of the newer one.
        gw.openai("carol").chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        deadline = time.time() + 10
        while True:
            newer = orjson.loads(get(gw.base, "/admin/v1/ledger/checkpoint")[1])["checkpoint"]
            if newer["tree_size"] > sealed["tree_size"] or time.time() > deadline:
                break
            time.sleep(0.2)
        status, body = get(gw.base, f"/admin/v1/ledger/consistency?from={sealed['tree_size']}&to={newer['tree_size']}")
        c = orjson.loads(body)
        assert status == 200
        assert verify_consistency(sealed["tree_size"], newer["tree_size"], bytes.fromhex(sealed["root"]),
                                  bytes.fromhex(newer["root"]), [bytes.fromhex(h) for h in c["proof"]])
        assert not verify_consistency(sealed["tree_size"], newer["tree_size"], bytes.fromhex(newer["root"]),
                                      bytes.fromhex(newer["root"]), [bytes.fromhex(h) for h in c["proof"]])
        assert get(gw.base, "/admin/v1/ledger/consistency?from=1&to=x")[0] == 400

        status, focus = get(gw.base, "/admin/v1/ledger/export?format=focus")
        header = focus.splitlines()[0].decode().split(",")
        assert status == 200 and {"BilledCost", "EffectiveCost", "ChargePeriodStart", "ServiceName"} <= set(header)


def test_a_denial_is_explained_with_the_budget_that_bound_it(tmp_path: Path) -> None:
    raw = org(tmp_path, [{"id": "acme-month", "scope": "tenant:acme", "cap_usd": "1000", "period": "month"},
                         {"id": "carol-day", "scope": "employee:carol", "cap_usd": "0.0001", "period": "day"}])
    with gateway(config_of(raw)) as gw:
        with pytest.raises(openai.APIStatusError) as denial:
            gw.openai("carol").chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=1000)
        assert denial.value.status_code == 402
        p402 = denial.value.body["p402"]  # the SDK's error body is the envelope's `error` object
        budget = p402["budget"]
        assert (budget["id"], p402["scope"]) == ("carol-day", "employee:carol")

        status, body = get(gw.base, f"/admin/v1/ledger/events/{p402['event_id']}")
        explanation = orjson.loads(body)["explanation"]
        assert status == 200
        assert (f"The binding budget was carol-day on employee:carol: cap ${budget['cap_usd']}, "
                f"settled ${budget['settled_usd']}, reserved ${budget['reserved_usd']}, "
                f"remaining ${budget['remaining_usd']}.") in explanation
        assert "Employee carol (department sales, key k-carol, tenant acme) asked for gpt-4o-mini" in explanation

        # This store is tenant acme's: its rows, and none of another tenant's.
        mine = orjson.loads(get(gw.base, "/admin/v1/ledger/events?scope=tenant:acme")[1])["data"]
        theirs = orjson.loads(get(gw.base, "/admin/v1/ledger/events?scope=tenant:globex")[1])["data"]
        assert p402["event_id"] in {r["event_id"] for r in mine} and theirs == []


def test_exports_are_served_over_http_for_a_postgresql_store_too(tmp_path: Path) -> None:
    with pg_database("p402_export") as url:
        raw = org(tmp_path)
        raw["store"] = url
        raw.setdefault("ledger", {})["signing_key"] = str(tmp_path / "ledger-key.pem")  # not the working directory
        with gateway(config_of(raw)) as gw:
            reply = gw.openai("carol").chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT)
            event_id = reply.headers["X-P402-Event-Id"]
            status, export, headers = fetch(gw.base, "/admin/v1/ledger/export?format=jsonl")
            assert status == 200 and headers["Content-Disposition"] == 'attachment; filename="p402-ledger.jsonl"'
            path = tmp_path / "export.jsonl"
            path.write_bytes(export)
            report = verify_export(path)
            assert report.ok and report.rows >= 3
            assert event_id.encode() in export
            status, focus, headers = fetch(gw.base, "/admin/v1/ledger/export?format=focus")
            assert status == 200 and headers["Content-Disposition"] == 'attachment; filename="p402-ledger-focus.csv"'
            assert b"BilledCost" in focus.splitlines()[0] and len(focus.splitlines()) >= 2
