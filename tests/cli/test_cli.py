"""The `p402` command line, run in-process through `p402.cli.main.main` (and once as a real process).

The commands work on real SQLite files; where a command's effect is only visible
to a client (a key that authenticates, a revoked key), a real gateway on loopback
is started on the same file and called with the official OpenAI SDK.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
import yaml

from p402.cli.main import main
from p402.core.ledger import chain_hash
from tests.gatewaykit import config_of, free_port, gateway, org, wait_until

REPO = Path(__file__).resolve().parents[2]
PROMPT = [{"role": "user", "content": "Summarise the quarterly cloud bill in one line."}]
COMMANDS = ("serve", "demo", "apply", "keys", "budgets", "spend", "ledger")


def p402(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run one command in-process; returns (exit status, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse exits on usage errors, as the console script would
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def write_config(tmp: Path, raw: dict[str, Any] | None = None, name: str = "p402.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(raw if raw is not None else org(tmp), sort_keys=False))
    return path


def ledger(tmp: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(tmp / "p402.db") as c:
        return [orjson.loads(r[0]) for r in c.execute("SELECT body FROM ledger ORDER BY seq")]


def one_line(err: str) -> str:
    """The stderr of a failed command: exactly one line, no traceback."""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def test_help_and_a_user_mistake_as_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "p402.cli.main", "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stderr == ""
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", run.stdout, re.M), command
    # `python -m p402.cli.main` once printed a traceback here: the module ran twice
    # (as __main__ and as p402.cli.main) and the error class did not match.
    run = subprocess.run([sys.executable, "-m", "p402.cli.main", "spend", "--by", "planet"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stdout == ""
    assert one_line(run.stderr) == ("p402: --by 'planet' is not department, employee, project, customer, feature, "
                                    "workflow, key or model")


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], *([c, "--help"] for c in COMMANDS), ["keys", "create", "--help"],
                 ["ledger", "verify", "--help"]):
        code, out, err = p402(capsys, *argv)
        assert code == 0 and out.startswith("usage: p402") and err == "", argv


def test_apply_is_declarative_and_every_change_is_a_ledger_row(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    raw = org(tmp_path)
    cfg = write_config(tmp_path, raw)
    code, out, _ = p402(capsys, "apply", "-f", str(cfg))
    assert code == 0
    assert "create  budget acme-month" in out and "create  key k-alice" in out
    assert "create  employee alice" in out and "create  department eng" in out
    assert "secret" not in out  # every key in this file brings its own secret
    rows = ledger(tmp_path)
    assert rows and {r["kind"] for r in rows} == {"policy"}
    assert len(rows) == int(re.search(r"(\d+) change\(s\)", out).group(1))
    assert all(r["actor"] == f"apply:{cfg}" for r in rows)

    code, out, _ = p402(capsys, "apply", "-f", str(cfg))
    assert code == 0 and out.startswith(f"{cfg}: no changes (policy version ")
    assert len(ledger(tmp_path)) == len(rows)

    raw["budgets"] = [{"id": "acme-month", "scope": "tenant:acme", "cap_usd": "2000", "period": "month"},
                      {"id": "eng-month", "scope": "department:eng", "cap_usd": "50", "period": "month"}]
    write_config(tmp_path, raw)
    code, out, _ = p402(capsys, "apply", "-f", str(cfg))
    assert out.splitlines()[:2] == ["update  budget acme-month", "create  budget eng-month"]
    update = ledger(tmp_path)[len(rows)]
    assert (update["before"]["cap_usd"], update["after"]["cap_usd"]) == ("1000.00", "2000.00")

    # Without --prune, objects the file no longer names are kept; with it, they are deleted.
    raw["budgets"] = raw["budgets"][:1]
    write_config(tmp_path, raw)
    code, out, _ = p402(capsys, "apply", "-f", str(cfg))
    assert "no changes" in out
    code, out, _ = p402(capsys, "apply", "-f", str(cfg), "--prune")
    assert code == 0 and out.splitlines()[0] == "delete  budget eng-month"
    deleted = ledger(tmp_path)[-1]
    assert (deleted["action"], deleted["before"]["cap_usd"], deleted["after"]) == ("delete", "50.00", None)


def test_a_key_without_a_secret_in_the_file_gets_one_printed_once(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    raw = org(tmp_path)
    raw["keys"] = [{"id": "k-alice", "employee": "alice"}]
    cfg = write_config(tmp_path, raw)
    code, out, _ = p402(capsys, "apply", "-f", str(cfg))
    secret = re.search(r"key k-alice secret \(shown once\): (sk-p402-\S+)", out).group(1)
    code, out, _ = p402(capsys, "apply", "-f", str(cfg))
    assert "no changes" in out and secret not in out  # the key keeps its secret
    with gateway(config_of(raw)) as gw:
        assert gw.openai(secret).chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=3).choices


def test_keys_create_list_revoke_against_a_running_gateway(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    raw = org(tmp_path)
    cfg = str(write_config(tmp_path, raw))
    assert p402(capsys, "apply", "-f", cfg)[0] == 0
    code, out, _ = p402(capsys, "keys", "create", "--employee", "bob", "--id", "k-bob-laptop", "--config", cfg)
    assert code == 0 and out.startswith("key k-bob-laptop for employee bob\n")
    secret = re.search(r"shown once; p402 keeps only its hash\): (sk-p402-\S+)$", out, re.M).group(1)
    code, out, _ = p402(capsys, "keys", "create", "--department", "eng", "--config", cfg)
    assert code == 0 and re.match(r"key key_\w+ for department eng\n", out)

    code, out, _ = p402(capsys, "keys", "list", "--config", cfg)
    assert code == 0 and secret not in out and "sk-" not in out
    line = next(row for row in out.splitlines() if row.startswith("k-bob-laptop "))
    assert line.split() == ["k-bob-laptop", "employee:bob", "eng", "active", line.split()[-1]]
    assert len(out.splitlines()) == 2 + 5 + 2  # header, rule, the file's five keys, the two new ones

    with gateway(config_of(raw)) as gw:
        client = gw.openai(secret)
        raw_reply = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=3)
        event_id = raw_reply.headers["X-P402-Event-Id"]
        decision = next(r for r in ledger(tmp_path) if r.get("event_id") == event_id)
        assert (decision["key"], decision["employee"], decision["department"]) == ("k-bob-laptop", "bob", "eng")

        code, out, _ = p402(capsys, "keys", "revoke", "k-bob-laptop", "--config", cfg)
        assert code == 0 and out == "key k-bob-laptop revoked\n"
        # A running gateway learns of changes made elsewhere by polling the store's policy version.
        deadline = time.monotonic() + 10
        while True:
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=3)
            except openai.AuthenticationError:
                break
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.1)
        assert gw.openai("bob").chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=3).choices

    code, out, _ = p402(capsys, "keys", "list", "--config", cfg)
    assert next(r for r in out.splitlines() if r.startswith("k-bob-laptop ")).split()[3] == "revoked"
    revoke = [r for r in ledger(tmp_path) if r["kind"] == "policy" and r["object_id"] == "k-bob-laptop"]
    assert [(r["action"], r["actor"]) for r in revoke] == [("create", "cli"), ("revoke", "cli")]
    code, _, err = p402(capsys, "keys", "revoke", "k-bob-laptop", "--config", cfg)
    assert code == 1 and one_line(err) == "p402: key k-bob-laptop is already revoked"


def test_budgets_list_and_spend_show_the_settled_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    budgets = [{"id": "acme-month", "scope": "tenant:acme", "cap_usd": "1000", "period": "month"},
               {"id": "eng-month", "scope": "department:eng", "cap_usd": "20", "period": "month"},
               {"id": "per-dev", "scope": "department:eng", "per": "employee", "cap_usd": "2", "period": "day"}]
    raw = org(tmp_path, budgets)
    cfg = str(write_config(tmp_path, raw))
    costs: dict[str, Decimal] = {}
    with gateway(config_of(raw)) as gw:
        for who, dept, max_tokens in [("alice", "eng", 7), ("bob", "eng", 30), ("carol", "sales", 11)]:
            reply = gw.openai(who).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT,
                                                                           max_tokens=max_tokens)
            costs[dept] = costs.get(dept, Decimal(0)) + Decimal(reply.headers["X-P402-Cost-Usd"])

    code, out, _ = p402(capsys, "budgets", "list", "--config", cfg)
    assert code == 0
    table = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert table["eng-month"][:4] == ["eng-month", "department:eng", "month", "20.00"]
    assert Decimal(table["eng-month"][4]) == costs["eng"] and Decimal(table["eng-month"][5]) == 0
    assert Decimal(table["acme-month"][4]) == costs["eng"] + costs["sales"]
    assert table["per-dev"][1:4] == ["department:eng", "per", "employee"]

    code, out, _ = p402(capsys, "spend", "--by", "department", "--config", cfg)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("spend by department, month from ")
    assert lines[1].split() == ["DEPARTMENT", "SETTLED", "USD", "RESERVED", "CAP", "REMAINING", "USED", "REQUESTS",
                                "DENIED"]
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert set(rows) == {"eng", "sales"}
    dept, settled, reserved, cap, remaining, used, requests, denied = rows["eng"]
    assert Decimal(settled) == costs["eng"] and Decimal(reserved) == 0 and (requests, denied) == ("2", "0")
    assert cap == "20.00" and Decimal(remaining) == Decimal(20) - costs["eng"] and used.endswith("%")
    assert Decimal(rows["sales"][1]) == costs["sales"] and rows["sales"][3] == "-"  # sales has no budget of its own

    code, out, _ = p402(capsys, "spend", "--by", "employee", "--period", "total", "--config", cfg)
    employees = {line.split()[0]: Decimal(line.split()[1]) for line in out.splitlines()[3:]}
    assert employees["carol"] == costs["sales"] and employees["alice"] + employees["bob"] == costs["eng"]


def _shift_and_forge(db: sqlite3.Connection, after: int) -> None:
    """Insert a well-formed row after `after`, renumbering the rest: an insertion done with care."""
    db.execute("UPDATE ledger SET seq = seq + 1000000 WHERE seq > ?", (after,))
    db.execute("UPDATE ledger SET seq = seq - 999999 WHERE seq > 1000000")
    prev = db.execute("SELECT hash FROM ledger WHERE seq = ?", (after,)).fetchone()[0]
    body = orjson.dumps({"event_id": "evt_forged", "ts": "2026-01-01T00:00:00.000Z", "kind": "policy",
                         "seq": after + 1, "action": "update", "object": "budget", "object_id": "acme-month",
                         "actor": "nobody", "before": None, "after": {"cap_usd": "99999999"}},
                        option=orjson.OPT_SORT_KEYS)
    # `effects` too: the store file refuses rows without (an earlier p402's); a forger writes them.
    db.execute("INSERT INTO ledger (seq, event_id, ts, kind, body, prev_hash, hash, effects) "
               "VALUES (?,?,?,?,?,?,?,?)",
               (after + 1, "evt_forged", "2026-01-01T00:00:00.000Z", "policy", body.decode(), prev,
                chain_hash(prev, body), "{}"))


def _edit_body(db: sqlite3.Connection, seq: int) -> None:
    body = orjson.loads(db.execute("SELECT body FROM ledger WHERE seq = ?", (seq,)).fetchone()[0])
    body["actor"] = "someone-else"
    db.execute("UPDATE ledger SET body = ? WHERE seq = ?", (orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode(), seq))


def _swap(db: sqlite3.Connection, a: int, b: int, columns: str) -> None:
    first = db.execute(f"SELECT {columns} FROM ledger WHERE seq = ?", (a,)).fetchone()
    second = db.execute(f"SELECT {columns} FROM ledger WHERE seq = ?", (b,)).fetchone()
    sets = ", ".join(f"{c.strip()} = ?" for c in columns.split(","))
    db.execute(f"UPDATE ledger SET {sets} WHERE seq = ?", (*second, a))
    db.execute(f"UPDATE ledger SET {sets} WHERE seq = ?", (*first, b))


TAMPERING = {  # name -> (how, the row verify must name, words of its reason)
    "edit a body": (lambda db: _edit_body(db, 5), 5, "hash does not match"),
    "edit an indexed column": (lambda db: db.execute("UPDATE ledger SET kind = 'settle' WHERE seq = 5"), 5,
                               "column kind"),
    "delete a row": (lambda db: db.execute("DELETE FROM ledger WHERE seq = 5"), 6, "expected row 5 here"),
    "swap two rows' bodies": (lambda db: _swap(db, 4, 5, "body"), 4, "hash does not match"),
    "reorder two rows": (lambda db: _swap(db, 4, 5, "body, prev_hash, hash, event_id, kind"), 4, "prev_hash"),
    "insert a forged row": (lambda db: _shift_and_forge(db, 5), 7, "prev_hash does not match"),
    "append a row": (lambda db: db.execute(
        "INSERT INTO ledger (seq, event_id, ts, kind, body, prev_hash, hash, effects) SELECT seq + 1, 'evt_x', ts, "
        "kind, body, hash, hash, '{}' FROM ledger WHERE seq = (SELECT MAX(seq) FROM ledger)"), 13,
        "hash does not match"),
}


@pytest.mark.parametrize("how", TAMPERING)
def test_ledger_verify_names_the_first_bad_row(tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    cfg = str(write_config(tmp_path))
    p402(capsys, "apply", "-f", cfg)
    code, out, err = p402(capsys, "ledger", "verify", "--config", cfg)
    assert (code, err) == (0, "") and out.startswith("ledger intact: 12 rows")
    tamper, bad_row, words = TAMPERING[how]
    with sqlite3.connect(tmp_path / "p402.db") as db:
        tamper(db)
    code, out, err = p402(capsys, "ledger", "verify", "--config", cfg)
    assert code == 1 and out == ""
    line = one_line(err)
    assert re.match(rf"p402: LEDGER INVALID: row {bad_row}\b", line) and words in line, line


def test_a_trusted_key_and_no_signed_checkpoint_is_not_intact(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from p402.prove.signing import Signer, public_hex
    cfg = str(write_config(tmp_path))
    p402(capsys, "apply", "-f", cfg)  # 12 policy rows, and no gateway has run to seal them
    code, out, _ = p402(capsys, "ledger", "verify", "--config", cfg)
    assert code == 0 and "no signed checkpoint" in out  # without a key: intact, with the caveat
    key = public_hex(Signer.generate().public_key)
    code, out, err = p402(capsys, "ledger", "verify", "--config", cfg, "--key", key)
    assert (code, out) == (1, "") and one_line(err).startswith("p402: LEDGER UNPROVEN: 12 rows and no signed checkpoint")


def test_store_commands_take_a_store_url_instead_of_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = str(write_config(tmp_path))
    p402(capsys, "apply", "-f", cfg)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no p402.yaml here: the store URL alone must do
    url = f"sqlite:///{tmp_path / 'p402.db'}"
    code, out, _ = p402(capsys, "ledger", "verify", "--store", url)
    assert code == 0 and out.startswith("ledger intact: 12 rows")
    code, out, _ = p402(capsys, "keys", "list", "--store", url)
    assert code == 0 and "k-alice" in out


def _mistakes(tmp: Path) -> list[tuple[list[str], int, str]]:
    """(argv, exit status, the one line on stderr or a part of it)."""
    good = write_config(tmp)
    bad_yaml = tmp / "broken.yaml"
    bad_yaml.write_text("budgets:\n  - {id: x, cap_usd: \"5\"\n")
    bad_config = write_config(tmp, org(tmp, [{"id": "a", "scope": "tenant:acme", "cap_usd": "1", "period": "month"},
                                             {"id": "b", "scope": "tenant:acme", "cap_usd": 0.1, "period": "day"}]),
                              "test.yaml")
    missing = tmp / "missing.yaml"
    not_text = tmp / "utf16.yaml"
    not_text.write_bytes(b"\xff\xfestore: x\n")
    huge_cap = write_config(tmp, org(tmp, [{"id": "a", "scope": "tenant:acme", "cap_usd": "1e999999999",
                                            "period": "month"}]), "huge.yaml")
    bad_provider = org(tmp)
    bad_provider["providers"] = {**bad_provider["providers"], "openai": {"timeout_s": -1}}
    bad_provider_file = write_config(tmp, bad_provider, "bad-provider.yaml")
    endless = org(tmp)
    endless["providers"] = {**endless["providers"], "openai": {"timeout_s": float("nan")}}
    endless_file = write_config(tmp, endless, "endless.yaml")
    asleep = org(tmp)
    asleep["providers"] = {**asleep["providers"], "simulated": {"latency_ms": "1e999"}}
    asleep_file = write_config(tmp, asleep, "asleep.yaml")
    return [
        (["serve", "--config", str(endless_file), "--port", "1"], 2,
         "p402: providers.openai.timeout_s: expected a positive number of seconds, got nan"),
        (["serve", "--config", str(asleep_file), "--port", "1"], 2,
         "p402: providers.simulated.latency_ms: expected a number from 0 to 600,000, got '1e999'"),
        (["ledger", "verify", "--key", "", "--config", str(good)], 2,
         "p402: --key '': not a key file or a hex public key"),
        (["ledger", "verify", "--store", "sqlite:///"], 2,
         "p402: --store: 'sqlite:///' names no file: sqlite:///PATH, e.g. sqlite:///./p402.db"),
        (["serve", "--config", str(bad_provider_file), "--port", "1"], 2,
         "p402: providers.openai.timeout_s: expected a positive number of seconds, got -1"),
        (["frobnicate"], 2, "p402: error: argument COMMAND: invalid choice: 'frobnicate'"),
        (["keys", "list", "--bogus"], 2, "p402: error: unrecognized arguments: --bogus"),
        (["apply"], 2, "p402 apply: error: the following arguments are required: -f/--file"),
        (["serve", "--port", "eighty"], 2, "argument --port: invalid int value: 'eighty'"),
        (["serve", "--port", "0"], 2, "p402: --port 0 is not a TCP port (1-65535)"),
        (["keys", "create", "--employee", "a", "--department", "b"], 2, "not allowed with argument"),
        (["budgets", "list", "--config", str(missing)], 2,
         f"p402: {missing}: no such config file (pass --config FILE, or create p402.yaml)"),
        (["apply", "-f", str(missing)], 2, f"p402: {missing}: no such config file (pass -f FILE, or create p402.yaml)"),
        (["apply", "-f", str(bad_yaml)], 2, f"p402: {bad_yaml}: line 3: not valid YAML: "),
        (["apply", "-f", str(bad_config)], 2, f'p402: {bad_config}: budgets[1].cap_usd: write money as a quoted '
                                              f'decimal string such as "5.00", not the number 0.1'),
        (["spend", "--period", "fortnight", "--config", str(good)], 2, "p402: --period 'fortnight' is not hour"),
        (["keys", "create", "--employee", "zed", "--config", str(good)], 2, "p402: --employee 'zed' is not a known"),
        (["keys", "revoke", "nope", "--config", str(good)], 1, "p402: key nope does not exist"),
        (["ledger", "verify", "--store", f"sqlite:///{tmp / 'no' / 'such' / 'dir.db'}"], 2,
         f"p402: store file {tmp / 'no' / 'such' / 'dir.db'} does not exist; check --store"),
        (["keys", "revoke", "k-x", "--store", f"sqlite:///{tmp / 'no' / 'such' / 'dir.db'}"], 1,
         f"p402: cannot open store {tmp / 'no' / 'such' / 'dir.db'}: directory {tmp / 'no' / 'such'} does not exist"),
        (["demo", "--rate", "0"], 2, "p402: --rate must be positive"),
        (["apply", "-f", str(not_text)], 2, f"p402: {not_text}: not UTF-8 text"),
        (["apply", "-f", str(huge_cap)], 2, "budgets[0].cap_usd: '1e999999999' is not a decimal number"),
    ]


def test_user_mistakes_are_one_line_on_stderr_and_a_nonzero_exit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # commands given no --config look for ./p402.yaml
    for argv, status, message in _mistakes(tmp_path):
        code, out, err = p402(capsys, *argv)
        assert code == status, (argv, err)
        assert out == "", argv
        line = one_line(err)
        assert message in line, (argv, line)


def test_demo_runs_prints_its_urls_and_shows_admits_and_denials(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    # A short, fast run: two seconds at 20 requests/s covers the scenario cycle's admits and denials.
    code, out, err = p402(capsys, "demo", "--duration", "2", "--rate", "20", "--port", str(port), "--dir",
                          str(tmp_path))
    assert code == 0, err
    base = f"http://127.0.0.1:{port}"
    for url in (f"{base}/v1", f"{base}/dashboard?token=", f"{base}/admin/v1/budgets", f"{base}/metrics"):
        assert url in out, url
    traffic = [line for line in out.splitlines() if re.match(r"\d\d:\d\d:\d\d  (ALLOW|DENY|FAIL) ", line)]
    assert any("  ALLOW 200 " in line for line in traffic)
    assert any("  DENY  403 CATEGORY_DENIED " in line for line in traffic)
    assert not any("  FAIL " in line for line in traffic)
    assert re.search(r"^Ledger: \d+ rows, hash chain intact$", out, re.M)
    # The demo leaves its config behind, so the other commands can be pointed at it.
    code, out, _ = p402(capsys, "ledger", "verify", "--config", str(tmp_path / "p402.yaml"))
    assert code == 0 and out.startswith("ledger intact: ")


@pytest.mark.parametrize("argv, message", [
    (["--employee", "bob", "--id", "has space"], "--id must match [A-Za-z0-9._:-]{1,128}, got 'has space'"),
    (["--employee", "bob", "--id", "k/../x"], "--id must match [A-Za-z0-9._:-]{1,128}, got 'k/../x'"),
    (["--employee", "bob", "--id", "k-alice"], "--id key k-alice exists already"),
    (["--employee", "zed"], "--employee 'zed' is not a known employee"),
    (["--department", "nowhere"], "--department 'nowhere' is not a known department"),
    (["--workflow", "night batch"], "--workflow must be an id matching [A-Za-z0-9._:-]{1,128}, got 'night batch'"),
])
def test_keys_create_refuses_what_the_admin_api_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   argv: list[str], message: str) -> None:
    cfg = str(write_config(tmp_path))
    assert p402(capsys, "apply", "-f", cfg)[0] == 0
    before = p402(capsys, "keys", "list", "--config", cfg)[1]
    code, out, err = p402(capsys, "keys", "create", *argv, "--config", cfg)
    assert (code, out, one_line(err)) == (2, "", f"p402: {message}")
    assert p402(capsys, "keys", "list", "--config", cfg)[1] == before  # nothing was created


def test_paths_and_keys_the_user_got_wrong_are_one_line_not_a_traceback(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = p402(capsys, "identity", "new", "--key", str(tmp_path / "no-such-dir" / "owner.json"))
    assert code == 2 and one_line(err) == f"p402: No such file or directory: {tmp_path / 'no-such-dir' / 'owner.json'}"
    code, _, err = p402(capsys, "ledger", "verify", "--key", "zz", "--store", f"sqlite:///{tmp_path / 'p402.db'}")
    assert code == 2 and one_line(err) == "p402: --key zz: not an Ed25519 public key (hex, or a PEM file)"


def test_ledger_verify_with_a_store_url_checks_that_stores_own_checkpoint_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    with gateway(config_of(org(a, ledger={"checkpoint_max_events": 1}))) as gw:
        gw.openai("carol").chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        wait_until(lambda: any(r["kind"] == "checkpoint" for r in ledger(a)), 10)
    # Another organisation's config, and its own checkpoint key, are in the working directory.
    from p402.prove.signing import Signer
    write_config(b, org(b))
    assert p402(capsys, "apply", "-f", str(b / "p402.yaml"))[0] == 0
    Signer.load_or_create(b / "p402.ledger-key.pem")
    monkeypatch.chdir(b)
    code, out, err = p402(capsys, "ledger", "verify", "--store", f"sqlite:///{a / 'p402.db'}")
    assert (code, err) == (0, "") and re.match(r"ledger intact: \d+ rows, [1-9]\d* signed checkpoints", out), (out, err)


def test_serve_refuses_a_store_file_changed_outside_p402_in_one_line(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(write_config(tmp_path))
    assert p402(capsys, "apply", "-f", cfg)[0] == 0
    with sqlite3.connect(tmp_path / "p402.db") as db:
        db.execute("UPDATE ledger SET effects = '[1]' WHERE seq = 1")
        db.execute("UPDATE meta SET v = '0' WHERE k = 'folded_seq'")  # so a new store reads row 1 again
    code, _, err = p402(capsys, "serve", "--config", cfg, "--port", "1")
    assert code == 1 and err.strip().splitlines() == [
        "p402: ledger row 1: its effects cannot be read (ValueError('not an effects object')); "
        "the store file was changed outside p402"]


def test_a_file_that_is_not_utf8_is_named_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("budget: café\n".encode("latin-1"))  # text, but not UTF-8: each read once printed a traceback
    assert p402(capsys, "identity", "new", "--name", "alice")[0] == 0
    stray = tmp_path / "stray.key.json"
    stray.write_bytes((tmp_path / "alice.key.json").read_bytes() + b"\xff")
    stray.chmod(0o600)
    (tmp_path / "m1.yaml").write_text("budget: eng-month\nscope: department:eng\ncap_usd: \"5000\"\nperiod: month\n"
                                      "valid_until: 2099-01-01T00:00:00Z\n")
    garbled_ledger_key = tmp_path / "garbled.pem"
    garbled_ledger_key.write_bytes(b"\x80" * 32)
    cfg = str(write_config(tmp_path, org(tmp_path, ledger={"signing_key": str(garbled_ledger_key)})))
    assert p402(capsys, "apply", "-f", cfg)[0] == 0
    for argv, message in [
        (["mandate", "verify", str(latin1)], f"{latin1}: not UTF-8 text (a signed document is JSON)"),
        (["mandate", "sign", "--spec", str(latin1), "--key", "alice.key.json"],
         f"{latin1}: not UTF-8 text (a spec is YAML or JSON)"),
        (["override", "sign", "--spec", str(latin1), "--key", "alice.key.json"],
         f"{latin1}: not UTF-8 text (a spec is YAML or JSON)"),
        (["mandate", "sign", "--spec", "m1.yaml", "--key", str(stray)],
         f"key file {stray} is not UTF-8 text (a key file is JSON)"),
        (["ledger", "verify", "--key", str(latin1), "--config", cfg],
         f"--key {latin1}: not UTF-8 text (a key file holds PEM or hex)"),
        (["ledger", "verify", "--config", cfg],
         f"ledger key file {garbled_ledger_key}: not UTF-8 text (a key file holds PEM or hex)"),
    ]:
        code, out, err = p402(capsys, *argv)
        assert (code, out, one_line(err)) == (2, "", f"p402: {message}"), argv


def test_a_file_no_command_names_that_is_not_utf8_is_still_one_line(capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The safety net in main for a read that does not name its file (every read above does).
    from p402.cli import commands

    def reads_latin1(args: Any) -> int:
        "café".encode("latin-1").decode("utf-8")
        return 0
    monkeypatch.setattr(commands, "cmd_keys_list", reads_latin1)
    code, out, err = p402(capsys, "keys", "list")
    assert (code, out) == (2, "")
    assert one_line(err).startswith("p402: a file it read is not UTF-8 text ('utf-8' codec can't decode byte 0xe9")


def test_simulate_names_the_file_and_line_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(write_config(tmp_path))
    assert p402(capsys, "apply", "-f", cfg)[0] == 0
    jsonl, csv = tmp_path / "p402-ledger.jsonl", tmp_path / "p402-ledger.csv"
    assert p402(capsys, "ledger", "export", "--config", cfg, "--out", str(jsonl))[0] == 0
    assert p402(capsys, "ledger", "export", "--config", cfg, "--format", "csv", "--out", str(csv))[0] == 0
    assert p402(capsys, "simulate", "--config", cfg, "--file", str(jsonl))[0] == 0
    lines = jsonl.read_bytes().splitlines(keepends=True)
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_bytes(b"".join(lines[:4] + [b"{\"type\": \"event\", \"seq\": 4,\n"] + lines[5:]))
    for file, message in [
        (csv, f"{csv}: line 1 is not valid JSON (file damaged or cut mid-line); "
              "simulate reads a jsonl export (p402 ledger export --format jsonl)"),
        (garbled, f"{garbled}: line 5 is not valid JSON (file damaged or cut mid-line)"),
    ]:
        code, out, err = p402(capsys, "simulate", "--config", cfg, "--file", str(file))
        assert (code, out, one_line(err)) == (2, "", f"p402: {message}")


READ_ONLY = (["ledger", "verify"], ["ledger", "export", "--out", "ledger.jsonl"], ["budgets", "list"], ["spend"],
             ["keys", "list"])


def test_commands_that_only_read_refuse_a_store_file_that_does_not_exist(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # They created an empty store and reported on it: `ledger verify` with a typo said "ledger intact".
    work = tmp_path / "work"
    work.mkdir()
    cfg = write_config(tmp_path, org(tmp_path, store="sqlite:///./p402.db"))  # relative: to the working directory
    monkeypatch.chdir(work)
    for argv in READ_ONLY:
        code, out, err = p402(capsys, *argv, "--store", "sqlite:///./typo.db")
        assert (code, out, one_line(err)) == (
            2, "", f"p402: store file {work / 'typo.db'} does not exist (sqlite:///./typo.db); check --store"), argv
        code, out, err = p402(capsys, *argv, "--config", str(cfg))
        assert (code, out, one_line(err)) == (
            2, "", f"p402: store file {work / 'p402.db'} does not exist (sqlite:///./p402.db); "
                   f"check the store in {cfg}"), argv
    assert list(work.iterdir()) == []
    code, out, _ = p402(capsys, "ledger", "verify", "--store", "sqlite:///:memory:")  # nothing to mistype
    assert (code, out) == (0, "ledger intact: 0 rows, 0 signed checkpoints\n")
    # Commands that write still create the store, and then the readers read it.
    assert p402(capsys, "keys", "create", "--workflow", "nightly", "--config", str(cfg))[0] == 0
    assert (work / "p402.db").exists()
    for argv in READ_ONLY:
        code, out, err = p402(capsys, *argv, "--config", str(cfg))
        assert (code, err) == (0, ""), argv
    assert "workflow:nightly" in out  # keys list, last: the key is in the store the readers read
