"""Loading `p402.yaml`: every kind of mistake names the file, the key path and the problem; `${VAR}` expansion.

Each case writes a real file and loads it with `load_config`, as `p402 serve` and
`p402 apply` do.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from p402.config import CONFIG_KEYS, DEFAULT_HOLD_TTL_S, DEFAULT_MAX_BODY_BYTES, DEFAULT_STORE, load_config, parse_config
from p402.core.money import parse_usd
from p402.errors import ConfigError
from tests.gatewaykit import org

Edit = Callable[[dict[str, Any]], None]


def _set(path: list[Any], value: Any) -> Edit:
    def edit(raw: dict[str, Any]) -> None:
        node = raw
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = copy.deepcopy(value)  # cases edit further; never share the template
    return edit


def _drop(path: list[Any]) -> Edit:
    def edit(raw: dict[str, Any]) -> None:
        node = raw
        for step in path[:-1]:
            node = node[step]
        del node[path[-1]]
    return edit


def _append(section: str, item: Any) -> Edit:
    return lambda raw: raw.setdefault(section, []).append(item)


TWO_BUDGETS: Edit = _set(["budgets"], [{"id": "acme-month", "scope": "tenant:acme", "cap_usd": "1000", "period": "month"},
                                       {"id": "eng-day", "scope": "department:eng", "cap_usd": "5", "period": "day"}])


def _budget(field: str, value: Any) -> Edit:
    def edit(raw: dict[str, Any]) -> None:
        TWO_BUDGETS(raw)
        raw["budgets"][1][field] = value
    return edit


# (what is wrong, the edit that makes it wrong, the key path, words of the problem)
MISTAKES: list[tuple[str, Edit, str, str]] = [
    ("unknown top-level key", _set(["budget"], []), "budget", "unknown key; expected one of store, admin_tokens"),
    ("store URL", _set(["store"], "mysql://db"), "store", "must be sqlite:///PATH or postgresql://"),
    ("category name", _set(["policies"], [{"scope": "tenant:acme", "deny_categories": [5]}]),
     "policies[0].deny_categories[0]", "5 is not a category name"),
    ("store URL without a file", _set(["store"], "sqlite:///data/"), "store", "names no file: sqlite:///PATH"),
    ("provider setting typo", _set(["providers"], {"simulated": {"latency": 5}}), "providers.simulated.latency",
     "unknown key; expected one of latency_ms, completion_tokens, stream_delay_ms, base_url, timeout_s"),
    ("timezone", _set(["timezone"], "Mars/Olympus_Mons"), "timezone", "is not a known IANA timezone"),
    ("tenant id", _set(["tenant"], "acme corp"), "tenant", "must match [A-Za-z0-9._:-]{1,128}"),
    ("short admin token", _set(["admin_tokens", 1, "token"], "short"), "admin_tokens[1].token", "shorter than 16"),
    ("admin role", _set(["admin_tokens", 0, "role"], "root"), "admin_tokens[0].role",
     "'root' is not one of admin, finance, viewer"),
    ("unknown provider", _set(["providers", "acme-ai"], {}), "providers.acme-ai", "unknown provider; expected one of"),
    ("provider settings", _set(["providers", "simulated"], "fast"), "providers.simulated", "expected a mapping"),
    ("model's provider", _set(["models", 0, "provider"], "openai"), "models[0].provider",
     "'openai' is not a configured provider (simulated)"),
    ("model price missing a rate", _drop(["models", 0, "price", "output_per_mtok"]), "models[0].price.output_per_mtok",
     "is required"),
    ("model price as a float", _set(["models", 1, "price", "input_per_mtok"], 2.5), "models[1].price.input_per_mtok",
     'quoted decimal string such as "5.00", not the number 2.5'),
    ("model listed twice", _set(["models", 1, "name"], "gpt-4o-mini"), "models[1].name", "is listed twice"),
    ("unknown fallback", _set(["models", 0, "fallbacks"], ["gpt-9"]), "models[0].fallbacks",
     "fallback 'gpt-9' is not a model in this file"),
    ("max_output_tokens", _set(["models", 0, "max_output_tokens"], 0), "models[0].max_output_tokens",
     "must be from 1 to 1,000,000"),
    ("max_output_tokens too large", _set(["models", 0, "max_output_tokens"], 2**62), "models[0].max_output_tokens",
     "must be from 1 to 1,000,000"),
    ("context_window", _set(["models", 0, "context_window"], 0), "models[0].context_window",
     "must be from 1 to 100,000,000"),
    ("context_window too large", _set(["models", 0, "context_window"], 2**62), "models[0].context_window",
     "must be from 1 to 100,000,000"),
    ("context_window a string", _set(["models", 0, "context_window"], "128k"), "models[0].context_window",
     "expected a positive integer"),
    ("image_tokens", _set(["models", 0, "image_tokens"], 0), "models[0].image_tokens",
     "must be an integer from 1 to 100,000,000"),
    ("tokenizer", _set(["models", 0, "tokenizer"], "sentencepiece"), "models[0].tokenizer",
     "is not o200k_base, cl100k_base or bytes"),
    ("unknown model key", _set(["models", 0, "colour"], "red"), "models[0].colour", "unknown key; expected one of name"),
    ("department listed twice", _append("departments", {"id": "eng"}), "departments[3].id", "'eng' is listed twice"),
    ("department owner", _set(["departments", 0, "owner"], "0xOwnerAddress"), "departments[0].owner",
     "'0xOwnerAddress' is not an owner address (0x and 40 hex digits"),
    ("budget owner", _budget("owner", {"a": 1}), "budgets[1].owner", "is not an owner address"),
    ("category name", _budget("categories", ["chat", {}]), "budgets[1].categories[1]", "{} is not a category name"),
    ("employee's department", _set(["employees", 2, "department"], "marketing"), "employees[2].department",
     "'marketing' is not a department in this file"),
    ("key without an owner", _drop(["keys", 0, "employee"]), "keys[0]", "name exactly one owner"),
    ("key with two owners", _set(["keys", 0, "department"], "eng"), "keys[0]", "name exactly one owner"),
    ("key's employee", _set(["keys", 1, "employee"], "mallory"), "keys[1].employee",
     "'mallory' is not an employee in this file"),
    ("short key secret", _set(["keys", 2, "secret"], "hunter2"), "keys[2].secret", "shorter than 16 characters"),
    ("budget cap as a float", _budget("cap_usd", 0.1), "budgets[1].cap_usd",
     'write money as a quoted decimal string such as "5.00", not the number 0.1'),
    ("budget cap negative", _budget("cap_usd", "-5"), "budgets[1].cap_usd", "is negative"),
    ("budget cap too precise", _budget("cap_usd", "0.0000000001"), "budgets[1].cap_usd", "more than 9 decimal places"),
    ("budget period", _budget("period", "fortnight"), "budgets[1].period",
     "'fortnight' is not one of hour, day, week, month, quarter, year, total, request"),
    ("budget scope kind", _budget("scope", "team:eng"), "budgets[1].scope", "scope kind 'team' is not one of"),
    ("budget scope form", _budget("scope", "eng"), "budgets[1].scope", "must be written kind:id"),
    ("budget per", _budget("per", "planet"), "budgets[1].per", "'planet' is not one of tenant"),
    ("per on a request budget", lambda raw: (_budget("period", "request")(raw), raw["budgets"][1].update(per="employee")),
     "budgets[1].per", "per makes no sense"),
    ("budget mode", _budget("mode", "audit"), "budgets[1].mode", "'audit' is not enforce or shadow"),
    ("requires_mandate", _budget("requires_mandate", "yes"), "budgets[1].requires_mandate", "expected true or false"),
    ("budget missing its cap", lambda raw: (TWO_BUDGETS(raw), raw["budgets"][1].pop("cap_usd")), "budgets[1].cap_usd",
     "is required"),
    ("budget listed twice", _budget("id", "acme-month"), "budgets[1].id", "budget 'acme-month' is listed twice"),
    ("budgets not a list", _set(["budgets"], {"id": "x"}), "budgets", "expected a list, got dict"),
    ("budget not a mapping", _set(["budgets"], ["acme-month"]), "budgets[0]", "expected a mapping, got str"),
    ("policy requirement", _set(["policies"], [{"scope": "department:eng", "require": ["department"]}]),
     "policies[0].require", "'department' is not one of customer, project, feature, workflow"),
    ("policy scope", _set(["policies"], [{"scope": "eng", "deny_categories": ["premium"]}]), "policies[0].scope",
     "kind:id"),
    ("declared project id", _set(["projects"], [{"id": "a b"}]), "projects[0].id", "must match"),
    ("unknown limit", _set(["limits"], {"hold_ttl": 5}), "limits.hold_ttl", "unknown key; expected one of hold_ttl_s"),
    ("limit type", _set(["limits"], {"max_body_bytes": "8MB"}), "limits.max_body_bytes", "expected bytes, got str"),
    ("unset variable", _set(["keys", 0, "secret"], "${P402_TEST_UNSET_SECRET}"), "keys[0].secret",
     "environment variable P402_TEST_UNSET_SECRET is not set (write ${P402_TEST_UNSET_SECRET:-default}"),
]


@pytest.mark.parametrize("what, edit, path, words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_mistake_names_the_file_the_key_path_and_the_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               what: str, edit: Edit, path: str, words: str) -> None:
    monkeypatch.delenv("P402_TEST_UNSET_SECRET", raising=False)
    raw = org(tmp_path)
    edit(raw)
    file = tmp_path / "test.yaml"
    file.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_config(file)
    message = str(err.value)
    assert message.startswith(f"{file}: {path}: "), message
    assert words in message, message
    assert err.value.path == path


def test_the_file_itself_wrong(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such config file \(pass --config FILE"):
        load_config(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("store: sqlite:///./x.db\nbudgets:\n  - {id: a, cap_usd: \"5\"\n")
    with pytest.raises(ConfigError) as err:
        load_config(broken)
    assert str(err.value).startswith(f"{broken}: line 4: not valid YAML: ")
    listing = tmp_path / "list.yaml"
    listing.write_text("- store\n- budgets\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: the file must be a mapping"):
        load_config(listing)


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    file = tmp_path / "empty.yaml"
    file.write_text("# nothing yet\n")
    config = load_config(file)
    assert config.store == DEFAULT_STORE and config.tenant == "default" and config.timezone == "UTC"
    assert config.providers == {"simulated": {}} and config.models == () and config.budgets == ()
    assert (config.hold_ttl_s, config.max_body_bytes) == (DEFAULT_HOLD_TTL_S, DEFAULT_MAX_BODY_BYTES)
    assert config.source == str(file)


def test_environment_variables_are_expanded_before_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P402_TEST_SECRET", "sk-from-the-environment-0123")
    monkeypatch.setenv("P402_TEST_CAP", "12.5")
    monkeypatch.setenv("P402_TEST_SET_WITH_DEFAULT", "Europe/Berlin")
    monkeypatch.delenv("P402_TEST_UNSET", raising=False)
    raw = org(tmp_path)
    raw["keys"][0]["secret"] = "${P402_TEST_SECRET}"
    raw["budgets"][0]["cap_usd"] = "${P402_TEST_CAP}"
    raw["budgets"][0]["id"] = "acme-${P402_TEST_UNSET:-month}"  # a default, inside a longer string
    raw["timezone"] = "${P402_TEST_SET_WITH_DEFAULT:-UTC}"  # set: the variable wins over the default
    raw["tenant"] = "${P402_TEST_UNSET:-}acme"  # an empty default
    file = tmp_path / "env.yaml"
    file.write_text(yaml.safe_dump(raw))
    config = load_config(file)
    assert config.keys[0].secret == "sk-from-the-environment-0123"
    assert config.budgets[0].cap_nanos == parse_usd("12.5") and config.budgets[0].id == "acme-month"
    assert config.timezone == "Europe/Berlin" and config.tenant == "acme"


def test_the_documented_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The complete example in docs/configuration.md is a valid file."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    for name in ("P402_ADMIN_TOKEN", "P402_FINANCE_TOKEN", "ALICE_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(name, f"{name.lower()}-0123456789abcdef")
    file = tmp_path / "p402.yaml"
    file.write_text(example)
    config = load_config(file)
    assert set(yaml.safe_load(example)) == set(CONFIG_KEYS)  # the example shows every top-level key
    assert config.budgets and config.rules and config.models


def test_a_utf8_config_loads_under_an_ascii_locale(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    raw = org(tmp_path)
    raw["departments"].append({"id": "rnd", "name": "Recherche & Développement — 研究"})
    path = tmp_path / "p402.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run([sys.executable, "-c", "import sys; from p402.config import load_config; "
                           "print(load_config(sys.argv[1]).departments['rnd']['name'])", str(path)],
                          env=env, capture_output=True, text=True, encoding="utf-8", cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Recherche & Développement — 研究"


def test_openrouter_models_count_with_openai_s_tokenizer_only_when_they_are_openai_s(tmp_path: Path) -> None:
    raw = org(tmp_path)
    raw["providers"]["openrouter"] = {"api_key": "sk-or-test"}
    raw["models"] += [{"name": "router-gpt", "provider": "openrouter", "upstream": "openai/gpt-4o-mini"},
                      {"name": "router-claude", "provider": "openrouter", "upstream": "anthropic/claude-sonnet-4.5"},
                      {"name": "router-own", "provider": "openrouter", "upstream": "google/gemini-2.5-flash",
                       "tokenizer": "cl100k_base"}]
    models = {m.name: m for m in parse_config(raw).models}
    assert (models["router-gpt"].tokenizer, models["router-claude"].tokenizer, models["router-own"].tokenizer) == (
        "o200k_base", "bytes", "cl100k_base")
