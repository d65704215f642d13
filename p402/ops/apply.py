"""`p402 apply`: make the store's policy objects match a config file.

Declarative: applying the same file twice changes nothing, and every change is a
ledger row (kind `policy`) with the object's before and after. Objects that exist
in the store but not in the file (e.g. created through the admin API) are kept
unless `prune` is asked for.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from p402.config import Config
from p402.core.ids import new_id
from p402.core.scopes import ATTRIBUTION_ID_RE
from p402.ops.policy_cache import budget_to_dict, rule_to_dict
from p402.pipeline.auth import hash_secret
from p402.pipeline.ports import KeyRecord
from p402.pipeline.records import iso, policy_entry

__all__ = ["ApplyReport", "KeyRefused", "apply_config", "create_key", "desired_objects", "new_secret", "key_record"]


def new_secret() -> str:
    """A fresh API key secret: 256 random bits."""
    return "sk-p402-" + secrets.token_urlsafe(32)


@dataclass
class ApplyReport:
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # (action, kind, id)
    new_secrets: dict[str, str] = field(default_factory=dict)  # key id -> secret, shown once
    policy_version: int = 0


def desired_objects(config: Config) -> dict[str, dict[str, dict[str, Any]]]:
    """The store objects a config file describes, by kind then id."""
    out: dict[str, dict[str, dict[str, Any]]] = {
        "department": {k: dict(v) for k, v in config.departments.items()},
        "employee": {k: dict(v) for k, v in config.employees.items()},
        "budget": {b.id: budget_to_dict(b) for b in config.budgets},
        "rule": {},
    }
    for r in config.rules:
        # One rule object per scope: several entries on one scope merge.
        prev = out["rule"].get(str(r.scope))
        d = rule_to_dict(r)
        if prev is not None:
            d["deny_categories"] = sorted(set(prev["deny_categories"]) | set(d["deny_categories"]))
            d["require"] = sorted(set(prev["require"]) | set(d["require"]))
        out["rule"][str(r.scope)] = d
    for kind, ids in config.known.items():
        out[kind] = {i: {"id": i} for i in ids}
    return out


def key_record(tenant: str, employees: dict[str, dict[str, Any]], key_id: str, owner_kind: str, owner_id: str,
               now: datetime, department: str = "") -> KeyRecord:
    """A key's record: the owner fixes tenant, department, employee (and workflow)."""
    employee = workflow = ""
    if owner_kind == "employee":
        employee = owner_id
        department = str(employees.get(owner_id, {}).get("department", ""))
    elif owner_kind == "department":
        department = owner_id
    else:
        workflow = owner_id
    return KeyRecord(id=key_id, tenant=tenant, owner_kind=owner_kind, owner_id=owner_id,
                     department=department, employee=employee, workflow=workflow, created_at=iso(now))


@dataclass(frozen=True)
class KeyRefused(Exception):
    """A key cannot be created as asked: `field` names what is wrong (`id`, or the owner's kind)."""

    field: str
    message: str
    conflict: bool = False  # the id is taken (HTTP 409), rather than malformed or unknown (400)


async def create_key(store: Any, tenant: str, owner_kind: str, owner_id: object, key_id: object | None,
                     now: datetime, actor: str) -> tuple[KeyRecord, str]:
    """Create a key for an employee, department or workflow; returns its record and its secret
    (shown once: the store keeps only its hash). The admin API and `p402 keys create` both come
    here, so they accept and refuse the same ids and owners. Raises KeyRefused."""
    if not isinstance(owner_id, str) or not ATTRIBUTION_ID_RE.fullmatch(owner_id):
        raise KeyRefused(owner_kind, f"must be an id matching [A-Za-z0-9._:-]{{1,128}}, got {owner_id!r}")
    employees = await store.objects("employee")
    if owner_kind == "employee" and owner_id not in employees:
        raise KeyRefused("employee", f"{owner_id!r} is not a known employee")
    if owner_kind == "department" and owner_id not in await store.objects("department"):
        raise KeyRefused("department", f"{owner_id!r} is not a known department")
    ident = key_id if key_id is not None else new_id("key", now).lower()
    if not isinstance(ident, str) or not ATTRIBUTION_ID_RE.fullmatch(ident):
        raise KeyRefused("id", f"must match [A-Za-z0-9._:-]{{1,128}}, got {ident!r}")
    if any(k.id == ident for k in await store.list_keys()):
        raise KeyRefused("id", f"key {ident} exists already", conflict=True)
    record = key_record(tenant, employees, ident, owner_kind, owner_id, now)
    secret = new_secret()
    entry = policy_entry(new_id("evt", now), now, tenant, "create", "key", ident, actor, None,
                         {"owner": f"{owner_kind}:{owner_id}"})
    await store.put_key(record, hash_secret(secret), entry)
    return record, secret


async def apply_config(store: Any, config: Config, actor: str, prune: bool = False,
                       now: datetime | None = None) -> ApplyReport:
    """Bring the store in line with `config`; returns what changed."""
    now = now or datetime.now(timezone.utc)
    report = ApplyReport()
    changes: list[tuple[str, str, dict[str, Any] | None]] = []
    entries = []
    for kind, wanted in desired_objects(config).items():
        have = await store.objects(kind)
        for ident, body in wanted.items():
            if have.get(ident) != body:
                action = "update" if ident in have else "create"
                changes.append((kind, ident, body))
                entries.append(policy_entry(new_id("evt", now), now, config.tenant, action, kind, ident, actor,
                                            have.get(ident), body))
                report.changes.append((action, kind, ident))
        if prune:
            for ident in sorted(set(have) - set(wanted)):
                changes.append((kind, ident, None))
                entries.append(policy_entry(new_id("evt", now), now, config.tenant, "delete", kind, ident, actor,
                                            have[ident], None))
                report.changes.append(("delete", kind, ident))
    report.policy_version = await store.change_objects(changes, entries) if changes else await store.policy_version()

    existing = {k.id: k for k in await store.list_keys()}
    for spec in config.keys:
        record = key_record(config.tenant, config.employees, spec.id, spec.owner_kind, spec.owner_id, now,
                            spec.department)
        if spec.secret is None and spec.id in existing:
            continue  # a key made earlier without a secret in the file keeps its secret
        secret = spec.secret or new_secret()
        entry = policy_entry(new_id("evt", now), now, config.tenant, "update" if spec.id in existing else "create",
                             "key", spec.id, actor, None, {"owner": f"{spec.owner_kind}:{spec.owner_id}"})
        if await store.put_key(record, hash_secret(secret), entry):
            report.changes.append(("update" if spec.id in existing else "create", "key", spec.id))
            if spec.secret is None:
                report.new_secrets[spec.id] = secret
    if report.changes:
        report.policy_version = await store.policy_version()
    return report
