"""Fixtures: a real SQLite store in a temporary file, and a checkpoint signing key."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from p402.prove.signing import Signer
from p402.stores.sqlite import SqliteStore

from .ledgers import run


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "p402.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(db_path))
    yield s
    run(s.close())


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer.generate()
