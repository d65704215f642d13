"""`p402 ledger verify|export` and `p402 simulate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from p402.cli.main import CliError

__all__ = ["add_commands", "cmd_verify", "cmd_export", "cmd_simulate"]


def add_commands(sub: Any, add: Any, store_args: Any, parser_class: Any) -> None:
    ledger = add("ledger", None, "verify and export the tamper-evident ledger")
    lsub = ledger.add_subparsers(dest="ledger_command", metavar="SUBCOMMAND", parser_class=parser_class)
    p = lsub.add_parser("verify", help="exit 0 when the ledger is intact; otherwise name the first bad row",
                        description="check the hash chain and every signed checkpoint, of the store or of an "
                                    "export file (offline); exit 0 when intact, otherwise name the first bad row")
    p.set_defaults(func=cmd_verify)
    p.add_argument("--file", help="verify this jsonl export instead of the store (no store, no network)")
    p.add_argument("--key", help="the checkpoint public key you trust (hex, or a PEM file); default: the "
                                 "gateway's key file (store) or the key named in the export (file)")
    store_args(p)
    p = lsub.add_parser("export", help="write the ledger as jsonl (verifiable offline), csv or FOCUS",
                        description="write the ledger as jsonl (verifiable offline), csv or FOCUS csv")
    p.set_defaults(func=cmd_export)
    p.add_argument("--format", choices=("jsonl", "csv", "focus"), default="jsonl", help="default jsonl")
    p.add_argument("--out", required=True, help="the file to write")
    store_args(p)

    p = add("simulate", cmd_simulate, "replay an exported ledger against a proposed config: who would have been denied")
    p.add_argument("--config", required=True, help="the proposed p402.yaml")
    p.add_argument("--file", required=True, help="a jsonl export (p402 ledger export)")
    p.add_argument("--list", type=int, default=20, help="how many would-be denials to list (default 20)")


def _progress(label: str) -> Callable[[int, int | None], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int | None) -> None:
        if total:
            filled = int(30 * done / max(total, 1))
            sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} rows")
        else:
            sys.stderr.write(f"\r{label} {done} rows")
        sys.stderr.flush()
    return show


def _trusted_key(path_or_hex: str | None, named: str = "--key") -> Any:
    """The key `--key` gives (a PEM file, or hex), or the one in the file `named` (the gateway's key file)."""
    if path_or_hex is None:
        return None
    p = Path(path_or_hex)
    if not path_or_hex or p.is_dir():
        raise CliError(f"{named} {path_or_hex!r}: not a key file or a hex public key", 2)
    if p.exists():
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise CliError(f"{named} {path_or_hex}: not UTF-8 text (a key file holds PEM or hex)", 2) from None
        if "PRIVATE KEY" in text:
            from p402.prove.signing import Signer
            return Signer.load_or_create(p).public_key
        return text
    return path_or_hex


async def cmd_verify(args: argparse.Namespace) -> int:
    from p402.prove.audit import trusted_keys, verify_rows
    from p402.prove.export import verify_export
    key = _trusted_key(args.key)
    try:
        trusted_keys(key)
    except ValueError:
        raise CliError(f"--key {args.key}: not an Ed25519 public key (hex, or a PEM file)", 2) from None
    if args.file:
        if not Path(args.file).exists():
            raise CliError(f"{args.file}: no such file", 2)
        report = verify_export(args.file, key, progress=_progress("verifying"))
    else:
        from p402.cli.commands import open_from_args
        config, store = await open_from_args(args, create=False)
        if key is None and Path(config.signing_key).exists():
            key = _trusted_key(config.signing_key, "ledger key file")
        try:
            report = verify_rows(store.chain(), key)
        finally:
            await store.close()
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    if not report.ok:
        raise CliError(report.summary().replace("\n", "; "), 1)
    if args.key and report.rows and not report.checkpoints:
        # Given a key to trust, a ledger without a single signed checkpoint proves nothing: its rows
        # could have been rewritten wholesale and rehashed (a running gateway seals within seconds).
        raise CliError(f"LEDGER UNPROVEN: {report.rows} rows and no signed checkpoint to check against --key; "
                       "the chain alone cannot show that rows were not rewritten wholesale", 1)
    print(report.summary())
    return 0


async def cmd_export(args: argparse.Namespace) -> int:
    from p402.cli.commands import open_from_args
    from p402.prove.checkpoints import latest_checkpoint
    from p402.prove.export import csv_lines, jsonl_lines, write_lines
    from p402.prove.focus import focus_lines
    from p402.prove.signing import Signer
    config, store = await open_from_args(args, create=False)
    try:
        sealed = await latest_checkpoint(store)
        total = sum(1 for _ in store.chain()) if sys.stderr.isatty() else None
        progress = _progress(f"exporting {args.format}")
        rows = store.chain()
        if args.format == "jsonl":
            signer = Signer.load_or_create(config.signing_key) if Path(config.signing_key).exists() else None
            lines = jsonl_lines(rows, signer=signer, sealed=sealed, total=total, progress=progress)
        elif args.format == "csv":
            lines = csv_lines(rows, progress=progress, total=total)
        else:
            lines = focus_lines(rows, progress=progress, total=total)
        try:
            write_lines(lines, args.out)
        except OSError as exc:
            raise CliError(f"cannot write {args.out}: {exc.strerror or exc}", 1) from None
    finally:
        await store.close()
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(f"wrote {args.out} ({args.format})")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from p402.config import load_config
    from p402.core.policy import Policy
    from p402.prove.export import BadExportLine
    from p402.prove.simulate import simulate
    from p402.wiring import priced_models
    if not Path(args.file).exists():
        raise CliError(f"{args.file}: no such file", 2)
    config = priced_models(load_config(args.config))
    policy = Policy(version=0, tenant=config.tenant, models={m.name: m for m in config.models},
                    budgets=config.budgets, rules=config.rules, known=config.known,
                    timezone=ZoneInfo(config.timezone))
    try:
        report = simulate(args.file, policy, max_listed=args.list)
    except BadExportLine as exc:
        # A csv or FOCUS export (or any other file) fails on its first line: say what simulate reads.
        hint = "; simulate reads a jsonl export (p402 ledger export --format jsonl)" if exc.line == 1 else ""
        raise CliError(f"{args.file}: {exc}{hint}", 2) from None
    print(report.summary())
    return 0
