"""`p402.prove` stays independent: an auditor's tool must not drag in the gateway, stores or web stack."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import p402.prove

ALLOWED_THIRD_PARTY = {"cryptography", "orjson"}
ALLOWED_P402 = ("p402.core", "p402.errors", "p402.prove")
PACKAGE = Path(p402.prove.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_prove_imports_only_core_errors_stdlib_cryptography_and_orjson() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "p402":
                assert name.startswith(ALLOWED_P402), f"{path.name} imports {name}"
            else:
                assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY, f"{path.name} imports {name}"


def test_every_public_name_exists() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "__init__.py":
            continue
        module = importlib.import_module(f"p402.prove.{path.stem}")
        assert module.__doc__, f"{path.name} has no module docstring"
        for name in module.__all__:
            assert hasattr(module, name), f"p402.prove.{path.stem}.__all__ names missing {name}"
