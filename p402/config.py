"""Load and validate `p402.yaml` once, into plain frozen values.

Every error names the file, the key path and what is wrong, e.g.
`p402.yaml: budgets[2].cap_usd: write money as a quoted decimal string such as "5.00", not the number 0.1`.
`${VAR}` and `${VAR:-default}` are expanded in every string before validation.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from p402.core.money import MoneyError, parse_usd
from p402.core.periods import PERIODS
from p402.core.policy import IMAGE_TOKENS, IMAGE_TOKENS_BY_UPSTREAM, MAX_OUTPUT_TOKENS, Budget, ModelSpec, Price, Rule
from p402.core.scopes import ADDRESS_RE, ATTRIBUTION_ID_RE, HEADER_KINDS, SCOPE_KINDS, parse_scope
from p402.errors import ConfigError

__all__ = ["Config", "KeySpec", "load_config", "parse_config", "parse_budget", "ROLES", "PROVIDER_NAMES",
           "PROVIDER_SETTINGS", "DEFAULT_STORE", "DEFAULT_HOLD_TTL_S", "DEFAULT_MAX_BODY_BYTES", "CONFIG_KEYS", "default_signing_key",
           "store_url_problem", "sqlite_path"]

ROLES = ("admin", "finance", "viewer")
PROVIDER_NAMES = ("simulated", "openai", "anthropic", "gemini", "bedrock", "openrouter")
_HTTP_SETTINGS = ("api_key", "base_url", "timeout_s", "connect_timeout_s", "max_connections")
# Each provider's settings (docs/configuration.md): a typo such as `timeout:` is an error, not ignored.
PROVIDER_SETTINGS: dict[str, tuple[str, ...]] = {
    # SPEC §5: every provider takes base_url and timeout_s; the simulated one has no use for them.
    "simulated": ("latency_ms", "completion_tokens", "stream_delay_ms", "base_url", "timeout_s"),
    "openai": _HTTP_SETTINGS, "gemini": _HTTP_SETTINGS, "openrouter": _HTTP_SETTINGS,
    "anthropic": (*_HTTP_SETTINGS, "anthropic_version", "anthropic_beta"),
    "bedrock": (*_HTTP_SETTINGS, "profile", "region"),
}
DEFAULT_STORE = "sqlite:///./p402.db"
DEFAULT_HOLD_TTL_S = 900.0  # a hold outlives the longest upstream call (timeout_s) by a margin
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
# Every top-level key the file may hold (documented in docs/configuration.md; a test checks).
CONFIG_KEYS = ("store", "admin_tokens", "providers", "models", "tenant", "timezone", "departments", "employees",
               "keys", "budgets", "policies", "projects", "customers", "features", "workflows", "limits",
               "ledger")
DEFAULT_CHECKPOINT_INTERVAL_S = 60.0
DEFAULT_CHECKPOINT_MAX_EVENTS = 10_000
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class KeySpec:
    id: str
    owner_kind: str
    owner_id: str
    secret: str | None
    department: str = ""  # for workflow keys that bill to a department


@dataclass(frozen=True)
class Config:
    """The validated configuration."""

    source: str
    store: str
    tenant: str
    timezone: str
    admin_tokens: tuple[tuple[str, str], ...]
    providers: dict[str, dict[str, Any]]
    models: tuple[ModelSpec, ...]
    departments: dict[str, dict[str, Any]]
    employees: dict[str, dict[str, Any]]
    keys: tuple[KeySpec, ...]
    budgets: tuple[Budget, ...]
    rules: tuple[Rule, ...]
    known: dict[str, frozenset[str]] = field(default_factory=dict)
    hold_ttl_s: float = DEFAULT_HOLD_TTL_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    signing_key: str = ""  # the ledger's checkpoint signing key (Ed25519 PEM); made on first start
    checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S
    checkpoint_max_events: int = DEFAULT_CHECKPOINT_MAX_EVENTS


class _Ctx:
    """Carries the file name into every error message."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {path}: {problem}" if path else f"{self.source}: {problem}", path or None)


def _expand(value: Any, ctx: _Ctx, path: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ctx.fail(path, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)")
        return _ENV.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, ctx, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand(v, ctx, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    return value


def load_config(path: str | Path, flag: str = "--config") -> Config:
    """Read, expand and validate a config file (`flag`: the option that named it, for the error)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")  # YAML is UTF-8 whatever the locale says
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file (pass {flag} FILE, or create p402.yaml)") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text (a YAML config is a text file)") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise ConfigError(f"{p}: {where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_config(raw if raw is not None else {}, str(p))


def _typed(ctx: _Ctx, path: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise ctx.fail(path, f"expected {what}, got a boolean")
    if not isinstance(value, kind):
        raise ctx.fail(path, f"expected {what}, got {type(value).__name__} {value!r}")
    return value


def _ident(ctx: _Ctx, path: str, value: Any) -> str:
    _typed(ctx, path, value, str, "an id string")
    if not ATTRIBUTION_ID_RE.fullmatch(value):
        raise ctx.fail(path, f"id {value!r} must match [A-Za-z0-9._:-]{{1,128}}")
    return str(value)


def _only(ctx: _Ctx, path: str, item: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for k in item:
        if k not in allowed:
            raise ctx.fail(f"{path}.{k}", f"unknown key; expected one of {', '.join(allowed)}")


def _owner(ctx: _Ctx, path: str, value: Any) -> str:
    """An owner is the Ethereum address they sign mandates with (or none)."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not ADDRESS_RE.fullmatch(value):
        raise ctx.fail(path, f"{value!r} is not an owner address (0x and 40 hex digits, from `p402 identity new`)")
    return value


def _names(ctx: _Ctx, path: str, value: Any) -> list[str]:
    """A list of category names (strings)."""
    _typed(ctx, path, value, list, "a list of category names")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ctx.fail(f"{path}[{i}]", f"{item!r} is not a category name")
    return list(value)


def _list_of_dicts(ctx: _Ctx, raw: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = raw.get(name) or []
    _typed(ctx, name, value, list, "a list")
    for i, item in enumerate(value):
        _typed(ctx, f"{name}[{i}]", item, dict, "a mapping")
    return value


def _money(ctx: _Ctx, path: str, value: Any) -> int:
    try:
        return parse_usd(value)
    except MoneyError as exc:
        raise ctx.fail(path, str(exc)) from None


def parse_budget(item: dict[str, Any], path: str, ctx: _Ctx | None = None, owners: dict[str, str] | None = None) -> Budget:
    """Validate one budget mapping (config file or admin API payload)."""
    ctx = ctx or _Ctx("budget")
    _only(ctx, path, item, ("id", "scope", "cap_usd", "period", "per", "categories", "mode", "requires_mandate", "owner"))
    for req in ("id", "scope", "cap_usd", "period"):
        if req not in item:
            raise ctx.fail(f"{path}.{req}", "is required")
    ident = _ident(ctx, f"{path}.id", item["id"])
    try:
        scope = parse_scope(_typed(ctx, f"{path}.scope", item["scope"], str, "a scope such as department:eng"))
    except ValueError as exc:
        raise ctx.fail(f"{path}.scope", str(exc)) from None
    period = item["period"]
    if period not in PERIODS:
        raise ctx.fail(f"{path}.period", f"{period!r} is not one of {', '.join(PERIODS)}")
    per = item.get("per")
    if per is not None and per not in SCOPE_KINDS:
        raise ctx.fail(f"{path}.per", f"{per!r} is not one of {', '.join(SCOPE_KINDS)}")
    if per is not None and period == "request":
        raise ctx.fail(f"{path}.per", "a request-period budget caps each request alone; per makes no sense with it")
    cats = item.get("categories")
    if cats is not None:
        cats = frozenset(_names(ctx, f"{path}.categories", cats))
    mode = item.get("mode", "enforce")
    if mode not in ("enforce", "shadow"):
        raise ctx.fail(f"{path}.mode", f"{mode!r} is not enforce or shadow")
    requires = item.get("requires_mandate", False)
    _typed(ctx, f"{path}.requires_mandate", requires, bool, "true or false")
    owner = _owner(ctx, f"{path}.owner", item.get("owner")) or (owners or {}).get(str(scope), "")
    return Budget(id=ident, scope=scope, cap_nanos=_money(ctx, f"{path}.cap_usd", item["cap_usd"]), period=period,
                  per=per, categories=cats, mode=mode, requires_mandate=requires, owner=str(owner))


MAX_CONTEXT_WINDOW = 100_000_000  # above any model's; keeps every estimate inside 64-bit integers


def _model(ctx: _Ctx, path: str, item: dict[str, Any], providers: dict[str, Any]) -> ModelSpec:
    _only(ctx, path, item, ("name", "provider", "upstream", "categories", "price", "max_output_tokens", "fallbacks",
                            "tokenizer", "context_window", "image_tokens"))
    name = _typed(ctx, f"{path}.name", item.get("name"), str, "a model name")
    provider = item.get("provider")
    if provider not in providers:
        raise ctx.fail(f"{path}.provider", f"{provider!r} is not a configured provider ({', '.join(providers) or 'none'})")
    price = None
    if "price" in item:
        p = _typed(ctx, f"{path}.price", item["price"], dict, "a mapping with input_per_mtok and output_per_mtok")
        _only(ctx, f"{path}.price", p, ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok"))
        for req in ("input_per_mtok", "output_per_mtok"):
            if req not in p:
                raise ctx.fail(f"{path}.price.{req}", "is required")
        opt = {k: _money(ctx, f"{path}.price.{k}", p[k]) for k in ("cache_read_per_mtok", "cache_write_per_mtok") if k in p}
        price = Price(_money(ctx, f"{path}.price.input_per_mtok", p["input_per_mtok"]),
                      _money(ctx, f"{path}.price.output_per_mtok", p["output_per_mtok"]),
                      opt.get("cache_read_per_mtok"), opt.get("cache_write_per_mtok"))
    limit = item.get("max_output_tokens", 4096)
    _typed(ctx, f"{path}.max_output_tokens", limit, int, "a positive integer")
    if not 1 <= limit <= MAX_OUTPUT_TOKENS:
        raise ctx.fail(f"{path}.max_output_tokens", f"must be from 1 to {MAX_OUTPUT_TOKENS:,}")
    # OpenAI's own tokenizer only for OpenAI's models: OpenRouter routes to Anthropic, Google and
    # others, whose tokenizers make more tokens of the same text (their bound is the byte count).
    openai_model = provider in ("simulated", "openai") or (
        provider == "openrouter" and str(item.get("upstream") or item.get("name") or "").startswith("openai/"))
    tokenizer = item.get("tokenizer", "o200k_base" if openai_model else "bytes")
    if tokenizer not in ("o200k_base", "cl100k_base", "bytes"):
        raise ctx.fail(f"{path}.tokenizer", f"{tokenizer!r} is not o200k_base, cl100k_base or bytes")
    fallbacks = item.get("fallbacks") or []
    _typed(ctx, f"{path}.fallbacks", fallbacks, list, "a list of model names")
    cats = _names(ctx, f"{path}.categories", item.get("categories") or [])
    window = item.get("context_window")
    if window is not None:
        _typed(ctx, f"{path}.context_window", window, int, "a positive integer")
        if isinstance(window, bool) or not 1 <= window <= MAX_CONTEXT_WINDOW:
            raise ctx.fail(f"{path}.context_window", f"must be from 1 to {MAX_CONTEXT_WINDOW:,}")
    upstream = str(item.get("upstream") or name)
    images = item.get("image_tokens")
    if images is None:
        images = next((n for prefix, n in IMAGE_TOKENS_BY_UPSTREAM if upstream.startswith(prefix)), IMAGE_TOKENS)
    elif isinstance(images, bool) or not isinstance(images, int) or not 1 <= images <= MAX_CONTEXT_WINDOW:
        raise ctx.fail(f"{path}.image_tokens", f"must be an integer from 1 to {MAX_CONTEXT_WINDOW:,}")
    return ModelSpec(name=name, provider=str(provider), upstream=upstream,
                     categories=frozenset(cats), price=price, max_output_tokens=limit,
                     fallbacks=tuple(str(f) for f in fallbacks), tokenizer=tokenizer, context_window=window,
                     image_tokens=images)


def parse_config(raw: Any, source: str = "p402.yaml") -> Config:
    """Validate an already-parsed config mapping."""
    ctx = _Ctx(source)
    if not isinstance(raw, dict):
        raise ctx.fail("", "the file must be a mapping of keys such as store, models, budgets")
    raw = _expand(raw, ctx, "")
    for k in raw:
        if k not in CONFIG_KEYS:
            raise ctx.fail(str(k), f"unknown key; expected one of {', '.join(CONFIG_KEYS)}")
    store = _typed(ctx, "store", raw.get("store", DEFAULT_STORE), str, "a store URL")
    problem = store_url_problem(store)
    if problem is not None:
        raise ctx.fail("store", problem)
    tz = _typed(ctx, "timezone", raw.get("timezone", "UTC"), str, "an IANA timezone such as Europe/Berlin")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ctx.fail("timezone", f"{tz!r} is not a known IANA timezone") from None
    tenant = _ident(ctx, "tenant", raw.get("tenant", "default"))
    providers = _providers(ctx, raw)
    departments = _members(ctx, raw, "departments", ("id", "owner", "name"))
    employees = _members(ctx, raw, "employees", ("id", "department", "name"))
    for i, (eid, e) in enumerate(employees.items()):
        if e.get("department") not in departments:
            raise ctx.fail(f"employees[{i}].department", f"{e.get('department')!r} is not a department in this file")
    known = {}
    for kind in ("project", "customer", "feature", "workflow"):
        if kind + "s" in raw:
            known[kind] = frozenset(_members(ctx, raw, kind + "s", ("id", "name")).keys())
    limits = _typed(ctx, "limits", raw.get("limits") or {}, dict, "a mapping")
    _only(ctx, "limits", limits, ("hold_ttl_s", "max_body_bytes"))
    hold_ttl = _positive(ctx, "limits.hold_ttl_s", limits.get("hold_ttl_s", DEFAULT_HOLD_TTL_S), (int, float), "seconds")
    max_body = _positive(ctx, "limits.max_body_bytes", limits.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES), int, "bytes")
    ledger = _typed(ctx, "ledger", raw.get("ledger") or {}, dict, "a mapping")
    _only(ctx, "ledger", ledger, ("signing_key", "checkpoint_interval_s", "checkpoint_max_events"))
    return Config(
        source=source, store=store, tenant=tenant, timezone=tz, admin_tokens=_admin_tokens(ctx, raw),
        providers=providers, models=_models(ctx, raw, providers), departments=departments, employees=employees,
        keys=tuple(_key(ctx, f"keys[{i}]", k, departments, employees)
                   for i, k in enumerate(_list_of_dicts(ctx, raw, "keys"))),
        budgets=_budgets(ctx, raw, departments),
        rules=tuple(_rule(ctx, f"policies[{i}]", r) for i, r in enumerate(_list_of_dicts(ctx, raw, "policies"))),
        known=known, hold_ttl_s=float(hold_ttl), max_body_bytes=max_body,
        signing_key=_typed(ctx, "ledger.signing_key", ledger.get("signing_key", default_signing_key(store)), str,
                           "a file path"),
        checkpoint_interval_s=float(_positive(ctx, "ledger.checkpoint_interval_s", ledger.get(
            "checkpoint_interval_s", DEFAULT_CHECKPOINT_INTERVAL_S), (int, float), "seconds")),
        checkpoint_max_events=_positive(ctx, "ledger.checkpoint_max_events", ledger.get(
            "checkpoint_max_events", DEFAULT_CHECKPOINT_MAX_EVENTS), int, "a row count"))


def _positive(ctx: _Ctx, path: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    _typed(ctx, path, value, kind, what)
    if value <= 0:
        raise ctx.fail(path, f"must be more than zero ({what})")
    return value


def _admin_tokens(ctx: _Ctx, raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    tokens = []
    for i, t in enumerate(_list_of_dicts(ctx, raw, "admin_tokens")):
        _only(ctx, f"admin_tokens[{i}]", t, ("token", "role"))
        token = _typed(ctx, f"admin_tokens[{i}].token", t.get("token"), str, "a token string")
        if len(token) < 16:
            raise ctx.fail(f"admin_tokens[{i}].token", "is shorter than 16 characters; use a long random token")
        role = t.get("role", "admin")
        if role not in ROLES:
            raise ctx.fail(f"admin_tokens[{i}].role", f"{role!r} is not one of {', '.join(ROLES)}")
        tokens.append((token, str(role)))
    return tuple(tokens)


def _providers(ctx: _Ctx, raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    providers = _typed(ctx, "providers", raw.get("providers") or {"simulated": {}}, dict, "a mapping of providers")
    for name, settings in providers.items():
        if name not in PROVIDER_NAMES:
            raise ctx.fail(f"providers.{name}", f"unknown provider; expected one of {', '.join(PROVIDER_NAMES)}")
        _typed(ctx, f"providers.{name}", settings if settings is not None else {}, dict, "a mapping of settings")
        _only(ctx, f"providers.{name}", settings or {}, PROVIDER_SETTINGS[name])
    return {k: dict(v or {}) for k, v in providers.items()}


def _models(ctx: _Ctx, raw: dict[str, Any], providers: dict[str, Any]) -> tuple[ModelSpec, ...]:
    models = tuple(_model(ctx, f"models[{i}]", m, providers) for i, m in enumerate(_list_of_dicts(ctx, raw, "models")))
    names = [m.name for m in models]
    for i, m in enumerate(models):
        if m.name in names[:i]:  # name the repeat, not the original (as departments and employees do)
            raise ctx.fail(f"models[{i}].name", f"model {m.name!r} is listed twice")
        for f in m.fallbacks:
            if f not in names:
                raise ctx.fail(f"models[{i}].fallbacks", f"fallback {f!r} is not a model in this file")
    return models


def _key(ctx: _Ctx, path: str, k: dict[str, Any], departments: dict[str, Any], employees: dict[str, Any]) -> KeySpec:
    _only(ctx, path, k, ("id", "employee", "department", "workflow", "secret"))
    owners = [o for o in ("employee", "department", "workflow") if o in k]
    if owners == ["department", "workflow"]:
        owners = ["workflow"]  # a workflow key may also name the department it bills to
    if len(owners) != 1:
        raise ctx.fail(path, "name exactly one owner: employee, department or workflow "
                             "(a workflow key may add its department)")
    owner = owners[0]
    oid = _ident(ctx, f"{path}.{owner}", k[owner])
    if owner == "employee" and oid not in employees:
        raise ctx.fail(f"{path}.employee", f"{oid!r} is not an employee in this file")
    if owner == "department" and oid not in departments:
        raise ctx.fail(f"{path}.department", f"{oid!r} is not a department in this file")
    secret = k.get("secret")
    if secret is not None:
        _typed(ctx, f"{path}.secret", secret, str, "a secret string")
        if len(secret) < 16:
            raise ctx.fail(f"{path}.secret", "is shorter than 16 characters; use a long random secret")
    dept = ""
    if owner == "workflow" and "department" in k:
        dept = _ident(ctx, f"{path}.department", k["department"])
        if dept not in departments:
            raise ctx.fail(f"{path}.department", f"{dept!r} is not a department in this file")
    return KeySpec(_ident(ctx, f"{path}.id", k.get("id")), owner, oid, secret, dept)


def _budgets(ctx: _Ctx, raw: dict[str, Any], departments: dict[str, Any]) -> tuple[Budget, ...]:
    owners = {f"department:{d}": _owner(ctx, f"departments[{i}].owner", v.get("owner"))
              for i, (d, v) in enumerate(departments.items())}
    budgets = tuple(parse_budget(b, f"budgets[{i}]", ctx, owners) for i, b in enumerate(_list_of_dicts(ctx, raw, "budgets")))
    ids = [b.id for b in budgets]
    for i, b in enumerate(budgets):
        if b.id in ids[:i]:  # name the repeat, not the original
            raise ctx.fail(f"budgets[{i}].id", f"budget {b.id!r} is listed twice")
    return budgets


def _rule(ctx: _Ctx, path: str, r: dict[str, Any]) -> Rule:
    _only(ctx, path, r, ("scope", "deny_categories", "require"))
    try:
        scope = parse_scope(_typed(ctx, f"{path}.scope", r.get("scope"), str, "a scope"))
    except ValueError as exc:
        raise ctx.fail(f"{path}.scope", str(exc)) from None
    require = _typed(ctx, f"{path}.require", r.get("require") or [], list, "a list of attribution kinds")
    for kind in require:
        if kind not in HEADER_KINDS:
            raise ctx.fail(f"{path}.require", f"{kind!r} is not one of {', '.join(HEADER_KINDS)}")
    deny = _names(ctx, f"{path}.deny_categories", r.get("deny_categories") or [])
    return Rule(scope, frozenset(deny), tuple(require))


def store_url_problem(url: str) -> str | None:
    """What is wrong with a store URL (config `store:` or `--store`), or None."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):].partition("?")[0]
        if path != ":memory:" and (path.endswith("/") or Path(path).name in ("", ".", "..")):
            return f"{url!r} names no file: sqlite:///PATH, e.g. sqlite:///./p402.db"
        return None
    if url.startswith(("postgresql://", "postgres://")):
        return None
    return f"{url!r} must be sqlite:///PATH or postgresql://user@host/db"


def sqlite_path(url: str) -> str | None:
    """The file a `sqlite:///PATH` store URL names (as given: relative to the working directory), or
    None for `sqlite:///:memory:` and PostgreSQL."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].partition("?")[0]
    return None if path == ":memory:" else path


def default_signing_key(store: str) -> str:
    """Beside the SQLite file (`p402.db` -> `p402.ledger-key.pem`); for PostgreSQL, `./p402.ledger-key.pem`."""
    if store.startswith("sqlite:///"):
        path = store[len("sqlite:///"):].partition("?")[0]
        if path != ":memory:":
            return str(Path(path).with_suffix(".ledger-key.pem"))
    return "p402.ledger-key.pem"


def _members(ctx: _Ctx, raw: dict[str, Any], name: str, allowed: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(_list_of_dicts(ctx, raw, name)):
        _only(ctx, f"{name}[{i}]", item, allowed)
        ident = _ident(ctx, f"{name}[{i}].id", item.get("id"))
        if ident in out:
            raise ctx.fail(f"{name}[{i}].id", f"{ident!r} is listed twice")
        out[ident] = dict(item)
    return out

