"""Store commands: apply, keys, budgets, spend."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from p402.cli.main import CliError
from p402.config import Config, default_signing_key, load_config, parse_config, sqlite_path, store_url_problem
from p402.core.ids import new_id
from p402.core.periods import PERIODS
from p402.ops.apply import KeyRefused, apply_config, create_key
from p402.ops.policy_cache import PolicyCache
from p402.ops.spend import spend_report
from p402.pipeline.records import policy_entry
from p402.wiring import open_store

__all__ = ["open_from_args", "cmd_apply", "cmd_keys_create", "cmd_keys_list", "cmd_keys_revoke",
           "cmd_budgets_list", "cmd_spend", "table"]


def config_from_args(args: argparse.Namespace) -> Config:
    if getattr(args, "store", None):
        problem = store_url_problem(args.store)
        if problem is not None:
            raise CliError(f"--store: {problem}", 2)
        path = Path(args.config)
        base = load_config(path) if path.exists() else parse_config({}, "(no config)")
        # The ledger key lives beside its store unless the config names one: `--store` moves both,
        # so `ledger verify --store X` checks X's checkpoints against X's key.
        key = base.signing_key
        if key == default_signing_key(base.store):
            key = default_signing_key(args.store)
        return replace(base, store=args.store, signing_key=key)
    return load_config(args.config)


async def open_from_args(args: argparse.Namespace, *, create: bool) -> tuple[Config, Any]:
    """The config and the store that `--config` or `--store` name.

    `create` is False for a command that only reads: a SQLite file that does not
    exist is refused, not created. An empty store verifies and has no spend, so
    `ledger verify --store sqlite:///./typo.db` read as a passing audit.
    """
    config = config_from_args(args)
    if not create:
        _require_store_file(config, "--store" if getattr(args, "store", None) else None)
    return config, await open_store(config.store)


def _require_store_file(config: Config, flag: str | None) -> None:
    path = sqlite_path(config.store)
    if path is None or os.path.exists(path):
        return
    # SQLite resolves a relative path against the working directory, not the config file's: show where.
    url = "" if os.path.isabs(path) else f" ({config.store})"
    named = flag or f"the store in {config.source}"
    raise CliError(f"store file {os.path.abspath(path)} does not exist{url}; check {named}", 2)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    def fmt(cells: list[str]) -> str:
        out = []
        for i, c in enumerate(cells):
            numeric = c.replace(".", "", 1).replace("%", "").isdigit()
            out.append(c.rjust(widths[i]) if numeric else c.ljust(widths[i]))
        return "  ".join(out).rstrip()
    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


async def cmd_apply(args: argparse.Namespace) -> int:
    config = load_config(args.file, flag="-f")
    store = await open_store(config.store)
    try:
        report = await apply_config(store, config, actor=f"apply:{args.file}", prune=args.prune)
    finally:
        await store.close()
    if not report.changes:
        print(f"{args.file}: no changes (policy version {report.policy_version})")
        return 0
    for action, kind, ident in report.changes:
        print(f"{action:7} {kind} {ident}")
    for key_id, secret in report.new_secrets.items():
        print(f"key {key_id} secret (shown once): {secret}")
    print(f"{len(report.changes)} change(s); policy version {report.policy_version}")
    return 0


async def cmd_keys_create(args: argparse.Namespace) -> int:
    config, store = await open_from_args(args, create=True)
    try:
        kind = "employee" if args.employee else "department" if args.department else "workflow"
        owner = args.employee or args.department or args.workflow
        try:
            record, secret = await create_key(store, config.tenant, kind, owner, args.id,
                                              datetime.now(timezone.utc), "cli")
        except KeyRefused as exc:
            raise CliError(f"--{exc.field} {exc.message}", 2) from None
        ident = record.id
    finally:
        await store.close()
    print(f"key {ident} for {kind} {owner}")
    print(f"secret (shown once; p402 keeps only its hash): {secret}")
    return 0


async def cmd_keys_list(args: argparse.Namespace) -> int:
    _, store = await open_from_args(args, create=False)
    try:
        keys = await store.list_keys()
    finally:
        await store.close()
    print(table(["ID", "OWNER", "DEPARTMENT", "STATUS", "CREATED"],
                [[k.id, f"{k.owner_kind}:{k.owner_id}", k.department or "-", "revoked" if k.revoked else "active",
                  k.created_at] for k in keys]))
    return 0


async def cmd_keys_revoke(args: argparse.Namespace) -> int:
    config, store = await open_from_args(args, create=True)
    try:
        now = datetime.now(timezone.utc)
        await store.revoke_key(args.id, policy_entry(new_id("evt", now), now, config.tenant, "revoke", "key",
                                                     args.id, "cli", {"revoked": False}, {"revoked": True}))
    finally:
        await store.close()
    print(f"key {args.id} revoked")
    return 0


async def cmd_budgets_list(args: argparse.Namespace) -> int:
    from p402.core.money import format_usd
    from p402.core.periods import window_for
    config, store = await open_from_args(args, create=False)
    try:
        cache = PolicyCache(config, store)
        await cache.refresh(force=True)
        policy = cache.current
        now = datetime.now(timezone.utc)
        rows = []
        for b in policy.budgets:
            settled = reserved = 0
            if b.period != "request":
                w = window_for(b.period, now, policy.timezone)
                for _, s, r in await store.counters_of(b.id, w.key):
                    settled, reserved = settled + s, reserved + r
            extra = f" per {b.per}" if b.per else ""
            cats = f" [{','.join(sorted(b.categories))}]" if b.categories else ""
            rows.append([b.id, f"{b.scope}{extra}{cats}", b.period, format_usd(policy.cap_of(b, now)),
                         format_usd(settled, 4), format_usd(reserved, 4), b.mode])
    finally:
        await store.close()
    print(table(["ID", "SCOPE", "PERIOD", "CAP USD", "SETTLED", "RESERVED", "MODE"], rows))
    return 0


async def cmd_spend(args: argparse.Namespace) -> int:
    if args.by not in ("department", "employee", "project", "customer", "feature", "workflow", "key", "model"):
        raise CliError(f"--by {args.by!r} is not department, employee, project, customer, feature, workflow, key or model", 2)
    if args.period not in PERIODS or args.period == "request":
        raise CliError(f"--period {args.period!r} is not hour, day, week, month, quarter, year or total", 2)
    config, store = await open_from_args(args, create=False)
    try:
        cache = PolicyCache(config, store)
        await cache.refresh(force=True)
        report = await spend_report(store, cache.current, args.by, args.period, datetime.now(timezone.utc))
    finally:
        await store.close()
    rows = [[r[args.by] or "-", r["settled_usd"], r["reserved_usd"], r.get("cap_usd", "-"), r.get("remaining_usd", "-"),
             f"{r['percent']}%" if r.get("percent") is not None else "-", str(r["requests"]), str(r["denied"])]
            for r in report["data"]]
    print(f"spend by {args.by}, {args.period} from {report['window']['start']}")
    print(table([args.by.upper(), "SETTLED USD", "RESERVED", "CAP", "REMAINING", "USED", "REQUESTS", "DENIED"], rows))
    return 0
