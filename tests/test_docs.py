"""Docs are part of the product: this fails when the code grows something the docs do not say.

Every deny code, config key (top-level and nested), CLI command, admin route, client
route, `X-P402-*` header, recovery action and metric must be documented; `docs/cli.md`
must be exactly what `p402.cli.docgen` renders; every relative link must resolve.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from p402.cli.docgen import command_parsers, render
from p402.config import CONFIG_KEYS
from p402.core.decision import DENY_CODES, DENY_HTTP_STATUS
from p402.core.scopes import HEADER_KINDS
from p402.ops.metrics import Metrics
from p402.web.client import ROUTES
from p402.web.openapi import ADMIN_PATHS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "p402"


def doc(name: str) -> str:
    return (DOCS / name).read_text()


def test_cli_reference_is_generated_from_the_parser() -> None:
    assert doc("cli.md") == render(), "docs/cli.md is out of date: run python -m p402.cli.docgen --out docs/cli.md"


def test_every_cli_command_has_a_section() -> None:
    text = doc("cli.md")
    names = [name for name, _ in command_parsers()]
    assert {"p402 apply", "p402 keys create", "p402 ledger verify", "p402 spend"} <= set(names)
    for name in names:
        assert f"\n## `{name}`\n" in text, name


@pytest.mark.parametrize("code", DENY_CODES)
def test_every_deny_code_is_documented_with_its_status(code: str) -> None:
    row = re.compile(rf"^\| \d \| `{code}` \| {DENY_HTTP_STATUS[code]} \|", re.M)
    assert row.search(doc("decisions.md")), f"docs/decisions.md has no table row for {code}"
    assert f"`{code}`" in doc("glossary.md")


def test_deny_codes_are_listed_in_precedence_order() -> None:
    text = doc("decisions.md")
    assert [m.group(1) for m in re.finditer(r"^\| \d \| `([A-Z_]+)` \|", text, re.M)] == list(DENY_CODES)


def _recovery_actions() -> set[str]:
    tree = ast.parse((PACKAGE / "core" / "decision.py").read_text())
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Recovery"
            and node.args and isinstance(node.args[0], ast.Constant)}


def test_every_recovery_action_is_documented() -> None:
    actions = _recovery_actions()
    assert {"reduce_max_tokens", "wait_for_reset", "request_override"} <= actions
    for action in actions:
        assert f"`{action}`" in doc("decisions.md"), action


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_every_top_level_config_key_is_documented(key: str) -> None:
    assert f"| `{key}` |" in doc("configuration.md"), f"docs/configuration.md has no table row for {key}"
    example = doc("configuration.md").split("```yaml\n", 1)[1].split("```", 1)[0]
    assert re.search(rf"^{key}:", example, re.M), f"the complete example in docs/configuration.md does not show {key}"


def _nested_config_keys() -> set[str]:
    """Every key config.py accepts inside a section: the tuples passed to `_only` and `_members`."""
    tree = ast.parse((PACKAGE / "config.py").read_text())
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("_only", "_members"):
            allowed = node.args[3]
            if isinstance(allowed, ast.Tuple):  # `_members` passes its own tuple on as a name
                keys |= {e.value for e in allowed.elts if isinstance(e, ast.Constant)}
    return keys


def test_every_nested_config_key_is_documented() -> None:
    keys = _nested_config_keys()
    assert {"cap_usd", "per", "requires_mandate", "input_per_mtok", "hold_ttl_s", "deny_categories"} <= keys
    text = doc("configuration.md")
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_every_admin_route_is_documented() -> None:
    lines = doc("api.md").splitlines()
    for path, methods in ADMIN_PATHS.items():
        for method in methods:
            assert any(f"`{method.upper()}`" in line and f"`{path}`" in line for line in lines), \
                f"docs/api.md has no line for {method.upper()} {path}"


def test_every_client_route_is_documented() -> None:
    text = doc("api.md")
    for path in [p.decode() for p in ROUTES] + ["/v1/models"]:
        assert f"{path}`" in text, path
    for path in ("/healthz", "/readyz", "/metrics", "/dashboard"):
        assert f"`GET {path}`" in text, path


def _headers_in_code() -> set[str]:
    """Every `X-P402-*` header the web edge and the pipeline name, plus the attribution headers."""
    found = {f"x-p402-{kind}" for kind in HEADER_KINDS}
    for folder in ("web", "pipeline"):
        for source in (PACKAGE / folder).glob("*.py"):
            found |= {h.lower() for h in re.findall(r"x-p402-[a-z]+(?:-[a-z]+)*", source.read_text(), re.I)}
    return found


def test_every_p402_header_is_documented() -> None:
    text = doc("api.md").lower()
    headers = _headers_in_code()
    assert {"x-p402-event-id", "x-p402-deny-code", "x-p402-cost-usd", "x-p402-project"} <= headers
    missing = sorted(h for h in headers if f"`{h}`" not in text)
    assert not missing, f"docs/api.md does not document {missing}"


def test_every_metric_is_documented() -> None:
    text = doc("api.md")
    exposed = []
    for family in Metrics().registry.collect():
        exposed.append(f"{family.name}_total" if family.type == "counter" else family.name)
    assert len(exposed) >= 4
    for name in exposed:
        assert f"`{name}`" in text, f"docs/api.md does not document the metric {name}"


GLOSSARY = ("Tenant", "Scope", "Attribution", "Key", "Budget", "Budget owner", "Hold", "Lease", "Counter",
            "Window", "Period", "Ledger", "Checkpoint", "Mandate", "Override", "Revocation", "Policy version",
            "Binding budget", "Headroom", "Estimate", "Settle", "Release", "Orphaned", "Overrun", "Shadow mode",
            "Deny code", "Recovery", "Spool", "Fail closed", "Store", "Replica", "Nano-dollar")


def test_the_glossary_defines_the_words_we_use() -> None:
    text = doc("glossary.md")
    for term in GLOSSARY:
        assert re.search(rf"^\*\*{re.escape(term)}(, [^*]+)?\*\* — ", text, re.M), term


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_and_anchor_resolves() -> None:
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # an absolute URL
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            assert linked.exists(), f"{page.name} links to missing {target}"
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.M)
                assert anchor in {_slug(h) for h in headings}, f"{page.name} links to missing anchor {target}"


def test_the_docs_named_in_the_brief_exist() -> None:
    for name in ("configuration.md", "decisions.md", "api.md", "cli.md", "glossary.md", "architecture.md"):
        assert (DOCS / name).read_text().startswith("# "), name
