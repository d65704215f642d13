"""`p402` — the command line entry point.

Every command is a thin shell over the library. A user mistake is one line on
stderr and exit code 2; a failure (store down, ledger corrupt) exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Callable, NoReturn, Sequence

from p402 import __version__
from p402.errors import ConfigError, P402Error

__all__ = ["main", "build_parser", "CliError"]


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the user sees what to fix.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="p402.yaml", help="config file (default ./p402.yaml)")
    p.add_argument("--store", help="store URL, instead of the config's (sqlite:///PATH or postgresql://...)")


def build_parser() -> argparse.ArgumentParser:
    from p402.cli import commands, ledger_cmds, serve

    parser = _Parser(prog="p402", description="p402: an AI budget gateway. Deny before spend; prove every decision.")
    parser.add_argument("--version", action="version", version=f"p402 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, fn: Callable[[argparse.Namespace], Any] | None, help_text: str) -> argparse.ArgumentParser:
        """Add a command; `fn` None makes a command group that prints its own help."""
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=fn if fn is not None else (lambda a: _help(p)))
        return p

    p = add("serve", serve.cmd_serve, "run the gateway")
    p.add_argument("--config", default="p402.yaml", help="config file (default ./p402.yaml)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4020, help="listen port (default 4020)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the store (default 1)")

    p = add("demo", serve.cmd_demo, "run a sample organisation on SQLite and the simulated provider, with live traffic")
    p.add_argument("--port", type=int, default=4020, help="listen port (default 4020)")
    p.add_argument("--dir", default=None, help="where to keep the demo's files (default: a new temporary directory)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--rate", type=float, default=8.0, help="requests per second of demo traffic (default 8)")

    p = add("apply", commands.cmd_apply, "apply a config file to the store (idempotent; changes are ledger rows)")
    p.add_argument("-f", "--file", required=True, help="the config file")
    p.add_argument("--prune", action="store_true", help="also delete store objects the file does not name")

    keys = add("keys", None, "manage API keys")
    ksub = keys.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", parser_class=_Parser)
    p = ksub.add_parser("create", help="create a key; prints its secret once", description="create a key; prints its secret once")
    p.set_defaults(func=commands.cmd_keys_create)
    owner = p.add_mutually_exclusive_group(required=True)
    owner.add_argument("--employee", help="the employee who owns the key")
    owner.add_argument("--department", help="the department that owns the key")
    owner.add_argument("--workflow", help="the workflow (agent) that owns the key")
    p.add_argument("--id", help="the key's id (default: generated)")
    _store_args(p)
    p = ksub.add_parser("list", help="list keys (never secrets)", description="list keys (never secrets)")
    p.set_defaults(func=commands.cmd_keys_list)
    _store_args(p)
    p = ksub.add_parser("revoke", help="revoke a key", description="revoke a key")
    p.set_defaults(func=commands.cmd_keys_revoke)
    p.add_argument("id", help="the key's id")
    _store_args(p)

    budgets = add("budgets", None, "inspect budgets")
    bsub = budgets.add_subparsers(dest="budgets_command", metavar="SUBCOMMAND", parser_class=_Parser)
    p = bsub.add_parser("list", help="budgets with their current balances", description="budgets with their current balances")
    p.set_defaults(func=commands.cmd_budgets_list)
    _store_args(p)

    p = add("spend", commands.cmd_spend, "spend per group for the current period, as a table")
    p.add_argument("--by", default="department", help="group by department (default), employee, project, customer, "
                                                       "feature, workflow, key or model")
    p.add_argument("--period", default="month", help="hour, day, week, month (default), quarter, year or total")
    _store_args(p)

    ledger_cmds.add_commands(sub, add, _store_args, _Parser)
    _optional_commands(sub, add, _store_args)
    return parser


def _optional_commands(sub: Any, add: Any, store_args: Any) -> None:
    """Command groups whose modules register themselves when present."""
    import importlib
    for module in ("p402.cli.identity_cmds", "p402.cli.models_cmds", "p402.cli.bench_cmds"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        mod.add_commands(sub, add, store_args, _Parser)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        result = args.func(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except ConfigError as exc:
        # A bad or missing config file is a user mistake (exit 2, as the module docstring says).
        return _fail(str(exc), 2)
    except P402Error as exc:
        return _fail(str(exc), 1)
    except OSError as exc:
        # A path the user named cannot be read or written (missing directory, permissions).
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}", 2)
    except UnicodeDecodeError as exc:
        # The files a command reads name themselves when they are not text; this is the net
        # for one that does not (the error carries no file name), so it is never a traceback.
        return _fail(f"a file it read is not UTF-8 text ({exc})", 2)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> int:
    """One line on stderr, whatever the message (a driver's error may span several)."""
    print("p402: " + " ".join(message.split()), file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    # Run the package's copy of this module, not `__main__`'s: the commands raise
    # `p402.cli.main.CliError`, which a `__main__.CliError` handler would not catch
    # (`python -m p402.cli.main` printed tracebacks for user mistakes).
    from p402.cli.main import main as _main
    sys.exit(_main())
