"""The checkpoint signing key: made once, private on disk, the same key on every later load."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from p402.errors import ConfigError
from p402.prove.signing import Signer, key_id_of, load_public_key, verify_signature


def test_first_use_creates_a_private_pem_file_and_later_loads_reuse_it(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "checkpoint.pem"
    first = Signer.load_or_create(path)
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = Signer.load_or_create(path)
    assert again.key_id == first.key_id and again.public_hex == first.public_hex
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pem"]  # no temporary files left behind


def test_signatures_verify_only_for_the_signed_message_and_the_right_key(tmp_path: Path) -> None:
    signer = Signer.load_or_create(tmp_path / "k.pem")
    signature = signer.sign(b"tree head 42")
    assert verify_signature(signer.public_key, signature, b"tree head 42")
    assert not verify_signature(signer.public_key, signature, b"tree head 43")
    assert not verify_signature(Signer.generate().public_key, signature, b"tree head 42")


def test_the_public_key_exports_as_hex_and_pem_and_loads_back(tmp_path: Path) -> None:
    signer = Signer.load_or_create(tmp_path / "k.pem")
    assert len(signer.public_hex) == 64
    assert signer.public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    for form in (signer.public_hex, signer.public_pem, bytes.fromhex(signer.public_hex), signer.public_key):
        assert key_id_of(load_public_key(form)) == signer.key_id
    assert signer.key_id.startswith("ed25519:") and len(signer.key_id) == len("ed25519:") + 32
    with pytest.raises(ValueError):
        load_public_key("not a key")


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    Signer.load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Signer.load_or_create(path)


def test_a_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_text("garbage")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="PEM"):
        Signer.load_or_create(path)


def test_two_processes_creating_the_key_at_once_end_up_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    script = ("import sys; from p402.prove.signing import Signer; "
              "print(Signer.load_or_create(sys.argv[1]).key_id)")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2]) for _ in range(4)]
    ids = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert ids == {Signer.load_or_create(path).key_id}
