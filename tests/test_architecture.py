"""Imports point down only (docs/architecture.md), checked on every import in the package with `ast`.

Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "p402"

# The layer of each top-level part of the package; an import must go to a lower layer.
# `cli` may import `web` (it runs the server); `p402` itself only holds `__version__`.
LAYERS = {
    "errors": 0,
    "core": 1,
    "pipeline": 2, "mandates": 2, "prove": 2, "config": 2,
    "providers": 3, "stores": 3,
    "ops": 4,
    "wiring": 5,
    "web": 6,
    "cli": 7,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=1)
def imports() -> dict[str, list[tuple[str, int]]]:
    """module -> [(imported module, line)], relative imports resolved."""
    out: dict[str, list[tuple[str, int]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found: list[tuple[str, int]] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                found.append((name, node.lineno))
                # `from p402 import web` imports a subpackage: count it as such (but not `__version__`).
                if name == "p402":
                    found += [(f"p402.{alias.name}", node.lineno) for alias in node.names
                              if (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").exists()]
        out[module] = found
    return out


def part_of(module: str) -> str:
    """`p402.core.money` -> `core`; `p402.wiring` -> `wiring`; `p402` -> `p402`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "p402"


def violations(rule: Callable[[str, str], bool]) -> list[str]:
    return [f"{module}:{line} imports {target}" for module, found in imports().items()
            for target, line in found if not rule(module, target)]


def test_the_scan_sees_the_whole_package() -> None:
    modules = imports()
    assert {"p402.core.decision", "p402.pipeline.gateway", "p402.web.app", "p402.cli.main", "p402.wiring",
            "p402.errors"} <= set(modules)
    assert "p402.core.money" in {t for t, _ in modules["p402.core.decision"]}
    # Relative and function-level imports are seen too.
    assert "p402.wiring" in {t for t, _ in modules["p402.web.app"]}


def test_core_imports_only_the_standard_library_and_itself() -> None:
    def ok(module: str, target: str) -> bool:
        if not module.startswith("p402.core"):
            return True
        top = target.split(".")[0]
        if top == "p402":
            return target.startswith("p402.core") or target == "p402.errors"
        return top in sys.stdlib_module_names
    assert violations(ok) == []


def test_errors_imports_nothing_from_p402() -> None:
    assert [t for t, _ in imports()["p402.errors"] if t.split(".")[0] == "p402"] == []


def test_the_pipeline_never_imports_the_edges_stores_or_wiring() -> None:
    def ok(module: str, target: str) -> bool:
        if not module.startswith("p402.pipeline"):
            return True
        return not target.startswith(("p402.web", "p402.stores", "p402.cli", "p402.wiring", "p402.providers",
                                      "p402.ops", "p402.config"))
    assert violations(ok) == []


def test_only_the_edges_import_the_edges() -> None:
    def ok(module: str, target: str) -> bool:
        if target.startswith(("p402.cli", "p402.web")):
            return module.startswith(("p402.cli", "p402.web"))
        return True
    assert violations(ok) == []


def test_only_the_edges_import_the_composition_root() -> None:
    def ok(module: str, target: str) -> bool:
        return not target.startswith("p402.wiring") or module.startswith(("p402.cli", "p402.web", "p402.wiring"))
    assert violations(ok) == []


@pytest.mark.parametrize("part", sorted(LAYERS))
def test_imports_point_down(part: str) -> None:
    def ok(module: str, target: str) -> bool:
        if part_of(module) != part or target.split(".")[0] != "p402" or target == "p402":
            return True
        other = part_of(target)
        if other == part or (part, other) == ("cli", "web"):
            return True
        assert other in LAYERS, f"{target} belongs to no layer: add it to LAYERS and docs/architecture.md"
        return LAYERS[other] < LAYERS[part]
    assert violations(ok) == [], f"p402.{part} imports a layer at or above its own (see docs/architecture.md)"


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {part_of(m) for m in imports()} - {"p402"}
    assert parts == set(LAYERS), "a new part of the package needs a layer here and in docs/architecture.md"
