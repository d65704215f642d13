"""`p402 identity new`, `p402 mandate sign|verify|revoke`, `p402 override sign`: a budget owner's whole flow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p402.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_an_owner_makes_an_identity_signs_verifies_and_revokes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "identity", "new")
    assert code == 0 and "owner.key.json" in out
    address = out.split()[1]
    assert (tmp_path / "owner.key.json").stat().st_mode & 0o777 == 0o600
    registration = json.loads((tmp_path / "owner.registration.json").read_text())
    assert registration["type"] == "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
    code, _, err = run(capsys, "identity", "new")  # never overwrites a key
    assert code == 2 and err.count("\n") == 1 and "exists" in err

    (tmp_path / "m.yaml").write_text("budget: eng-month\nscope: department:eng\ncap_usd: \"5000\"\nperiod: month\n"
                                     "valid_until: 2099-01-01T00:00:00Z\n")
    assert run(capsys, "mandate", "sign", "--spec", "m.yaml", "--key", "owner.key.json", "--out", "m.json")[0] == 0
    code, out, _ = run(capsys, "mandate", "verify", "m.json", "--owner", address)
    assert code == 0 and "eng-month" in out and address.lower() in out
    digest = json.loads((tmp_path / "m.json").read_text())["proof"]["digest"]

    tampered = json.loads((tmp_path / "m.json").read_text())
    tampered["proof"]["message"]["capUsd"] = "50000"
    (tmp_path / "bad.json").write_text(json.dumps(tampered))
    code, _, err = run(capsys, "mandate", "verify", "bad.json")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    code, _, err = run(capsys, "mandate", "verify", "m.json", "--owner", "0x" + "11" * 20)
    assert code == 1 and "SIGNATURE_INVALID" in err

    (tmp_path / "o.yaml").write_text("budget: eng-month\nextra_usd: \"250\"\nwindow_end: 2099-01-08T00:00:00Z\n")
    assert run(capsys, "override", "sign", "--spec", "o.yaml", "--key", "owner.key.json", "--out", "o.json")[0] == 0
    code, out, _ = run(capsys, "mandate", "verify", "o.json")
    assert code == 0 and "override" in out and "+$250" in out
    code, out, _ = run(capsys, "mandate", "revoke", "--digest", digest, "--reason", "retired", "--key", "owner.key.json")
    assert code == 0 and json.loads(out)["proof"]["message"]["mandate"] == digest

    code, _, err = run(capsys, "mandate", "sign", "--spec", "missing.yaml", "--key", "owner.key.json")
    assert code == 2 and err.count("\n") == 1 and "missing.yaml" in err


def test_times_past_the_year_9999_are_one_line_naming_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "identity", "new")[0] == 0
    (tmp_path / "o.yaml").write_text("budget: eng-month\nextra_usd: \"250\"\nwindow_start: 9999-12-24T23:59:59Z\n"
                                     "window_end: 9999-12-31T23:59:59Z\n")
    assert run(capsys, "override", "sign", "--spec", "o.yaml", "--key", "owner.key.json", "--out", "o.json")[0] == 0
    code, out, _ = run(capsys, "mandate", "verify", "o.json")
    assert code == 0 and "to 9999-12-31T23:59:59Z" in out  # the last second is still a time

    bad = json.loads((tmp_path / "o.json").read_text())
    bad["proof"]["message"]["windowEnd"] = 99999999999999  # a uint64, in the year 3170843
    (tmp_path / "o_bad.json").write_text(json.dumps(bad))
    code, _, err = run(capsys, "mandate", "verify", "o_bad.json")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "INVALID_DOCUMENT: proof.message.windowEnd: is after 9999-12-31T23:59:59Z" in err

    # An offset can carry a time written in 9999 past its end: the spec's key is named, exit 2.
    (tmp_path / "m.yaml").write_text("budget: eng-month\nscope: department:eng\ncap_usd: \"5000\"\nperiod: month\n"
                                     "valid_until: 9999-12-31T23:59:59-01:00\n")
    code, _, err = run(capsys, "mandate", "sign", "--spec", "m.yaml", "--key", "owner.key.json")
    assert code == 2 and err.count("\n") == 1 and "valid_until" in err and "after 9999-12-31T23:59:59Z" in err


def _owner_with_specs(tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "identity", "new", "--name", "alice")[0] == 0
    (tmp / "m1.yaml").write_text("budget: eng-month\nscope: department:eng\ncap_usd: \"5000\"\nperiod: month\n"
                                 "valid_until: 2099-01-01T00:00:00Z\n")
    (tmp / "o1.yaml").write_text("budget: eng-month\nextra_usd: \"250\"\nwindow_end: 2099-01-08T00:00:00Z\n")


@pytest.mark.parametrize("command", [
    ["mandate", "sign", "--spec", "m1.yaml", "--key", "alice.key.json"],
    ["override", "sign", "--spec", "o1.yaml", "--key", "alice.key.json"],
    ["mandate", "revoke", "--digest", "0x" + "ab" * 32, "--reason", "retired", "--key", "alice.key.json"],
    ["mandate", "verify", "m.json"],
    ["identity", "new", "--name", "bob"],
])
def test_a_chain_id_that_is_not_a_uint256_above_zero_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str],
                                                                command: list[str]) -> None:
    # EIP-712 encodes chainId as uint256 and chain ids start at 1; the ABI encoder's traceback was all one got.
    monkeypatch.chdir(tmp_path)
    _owner_with_specs(tmp_path, capsys)
    assert run(capsys, "mandate", "sign", "--spec", "m1.yaml", "--key", "alice.key.json", "--out", "m.json")[0] == 0
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.iterdir())
    for chain_id in ("-1", "0", "9" * 80, str(2**256)):
        code, out, err = run(capsys, *command, "--chain-id", chain_id)
        assert (code, out, err) == (2, "", f"p402: --chain-id {chain_id} is not a chain id "
                                           "(a positive integer below 2**256)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # identity new wrote no files for a bad id


def test_the_largest_uint256_chain_id_is_signed_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    _owner_with_specs(tmp_path, capsys)
    top = str(2**256 - 1)
    code, _, err = run(capsys, "mandate", "sign", "--spec", "m1.yaml", "--key", "alice.key.json", "--chain-id", top,
                       "--out", "m.json")
    assert code == 0, err
    assert json.loads((tmp_path / "m.json").read_text())["proof"]["chainId"] == 2**256 - 1
    code, _, err = run(capsys, "mandate", "verify", "m.json")  # the gateway's chain, 1
    assert code == 1 and "SIGNATURE_INVALID" in err and "proof.chainId" in err
