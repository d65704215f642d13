"""`p402 ledger verify|export`."""

from __future__ import annotations

import argparse
from typing import Any

from p402.cli.main import CliError
from p402.core.ledger import verify_chain

__all__ = ["add_commands", "cmd_verify"]


def add_commands(sub: Any, add: Any, store_args: Any, parser_class: Any) -> None:
    ledger = add("ledger", lambda a: ledger.print_help(), "verify and export the tamper-evident ledger")
    lsub = ledger.add_subparsers(dest="ledger_command", metavar="SUBCOMMAND", parser_class=parser_class)
    p = lsub.add_parser("verify", help="exit 0 when the ledger is intact; otherwise name the first bad row",
                        description="exit 0 when the ledger is intact; otherwise name the first bad row")
    p.set_defaults(func=cmd_verify)
    store_args(p)


async def cmd_verify(args: argparse.Namespace) -> int:
    from p402.cli.commands import open_from_args
    _, store = await open_from_args(args)
    try:
        count, fault = verify_chain(store.chain())
    finally:
        await store.close()
    if fault is not None:
        raise CliError(f"ledger verify FAILED at {fault}", 1)
    print(f"ledger intact: {count} rows verified")
    return 0
