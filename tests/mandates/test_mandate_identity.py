"""Identities: fresh keys, ERC-8004 registration files, key files that stay private."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from eth_account import Account

from p402.errors import ConfigError
from p402.mandates.identity import (REGISTRATION_TYPE, agent_registry_id, load_key, new_identity,
                                    normalise_address, save_key)


def test_new_identity_makes_a_working_key_and_registration_file() -> None:
    key, address, registration = new_identity("eng-owner")
    assert Account.from_key(key).address == address
    assert registration["type"] == REGISTRATION_TYPE
    assert registration["name"] == "eng-owner"
    assert {"name": "agentWallet", "endpoint": f"eip155:1:{address}"} in registration["services"]
    assert registration["registrations"] == []  # only an Identity Registry assigns an agentId
    json.dumps(registration)  # it is plain JSON, ready to publish


def test_identities_are_distinct() -> None:
    assert len({new_identity("x")[0] for _ in range(20)}) == 20


def test_registration_names_the_chain() -> None:
    _, address, registration = new_identity("bot", chain_id=8453)
    assert registration["services"][0]["endpoint"] == f"eip155:8453:{address}"


def test_key_file_round_trip_is_private(tmp_path: Path) -> None:
    key, address, _ = new_identity("alice")
    path = save_key(tmp_path / "alice.key", key, name="alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == (key, address)


def test_key_file_is_not_overwritten_by_accident(tmp_path: Path) -> None:
    key, _, _ = new_identity("alice")
    path = save_key(tmp_path / "alice.key", key)
    other, other_address, _ = new_identity("bob")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        save_key(path, other)
    assert load_key(path)[0] == key
    os.chmod(path, 0o644)
    save_key(path, other, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # an overwritten file is made private again
    assert load_key(path) == (other, other_address)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key, _, _ = new_identity("alice")
    path = save_key(tmp_path / "alice.key", key)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_key(path)


def test_an_edited_key_file_is_refused(tmp_path: Path) -> None:
    key, _, _ = new_identity("alice")
    path = save_key(tmp_path / "alice.key", key)
    body = json.loads(path.read_text())
    body["address"] = new_identity("mallory")[1]
    path.write_text(json.dumps(body))
    with pytest.raises(ConfigError, match="its key belongs to"):
        load_key(path)


def test_encrypted_key_file_needs_the_password(tmp_path: Path) -> None:
    key, address, _ = new_identity("alice")
    # A tiny scrypt work factor keeps the test fast; the default is about a second.
    path = save_key(tmp_path / "alice.json", key, password="correct horse", kdf_iterations=16)
    assert "private_key" not in path.read_text() and key[2:] not in path.read_text()
    assert load_key(path, password="correct horse") == (key, address)
    with pytest.raises(ConfigError, match="password is needed"):
        load_key(path)
    with pytest.raises(ConfigError, match="wrong password"):
        load_key(path, password="battery staple")
    # It is a standard keystore: any Ethereum wallet can import it.
    assert Account.decrypt(json.loads(path.read_text()), "correct horse").hex() == key[2:]


def test_missing_and_foreign_files_get_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_key(tmp_path / "nope.key")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    other.chmod(0o600)
    with pytest.raises(ConfigError, match="not a p402 key file"):
        load_key(other)


def test_addresses_are_checked() -> None:
    assert normalise_address("0x" + "Ab" * 20) == "0x" + "ab" * 20
    with pytest.raises(ConfigError, match="not an Ethereum address"):
        normalise_address("0x1234")
    registry = "0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"
    assert agent_registry_id(registry) == "eip155:1:" + registry.lower()
