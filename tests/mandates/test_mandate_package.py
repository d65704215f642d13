"""The package's public surface and the direction of its imports."""

from __future__ import annotations

import ast
import importlib
import json
import re
import sys
from pathlib import Path

import p402.mandates
from p402.mandates.documents import verify_document

PACKAGE = Path(p402.mandates.__file__).parent
# SPEC/STYLE: mandates may use core and errors, and these libraries; never stores, web, pipeline or cli.
ALLOWED_THIRD_PARTY = {"eth_account", "eth_utils", "coincurve", "rfc8785", "orjson"}
FORBIDDEN = ("p402.stores", "p402.web", "p402.cli", "p402.pipeline", "p402.wiring", "p402.config")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_imports_point_down_only() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for name in _imports(path):
            assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"
            top = name.split(".")[0]
            if top not in ("p402", "__future__"):
                stdlib = top in sys.stdlib_module_names
                assert stdlib or top in ALLOWED_THIRD_PARTY, f"{path.name} imports {name}"


def test_public_names_exist() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        module = importlib.import_module(f"p402.mandates.{path.stem}" if path.stem != "__init__" else "p402.mandates")
        for name in getattr(module, "__all__", ()):
            assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name}"


def test_the_documented_example_mandate_verifies() -> None:
    text = (PACKAGE.parents[1] / "docs" / "mandates.md").read_text()
    example = next(block for block in re.findall(r"```json\n(.*?)```", text, re.S) if '"BudgetMandate"' in block)
    verified = verify_document(json.loads(example))
    assert verified.terms is not None and verified.terms.budget_id == "eng-month"
    for code in ("SIGNATURE_INVALID", "MANDATE_INACTIVE", "UNKNOWN_BUDGET", "UNKNOWN_MANDATE", "MISMATCH",
                 "CONFLICT", "INVALID_DOCUMENT"):
        assert code in text, f"docs/mandates.md does not explain {code}"
