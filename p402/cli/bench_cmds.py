"""`p402 bench`: the overhead benchmark (docs/benchmarks.md).

A thin shell over `benchmarks.run` in the source checkout: the benchmark is
repository tooling (a fake upstream, a bare proxy, a LiteLLM install), not part
of the installed gateway, so this command finds `benchmarks/` next to the
package and says so clearly when it is not there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from p402.cli.main import CliError

__all__ = ["add_commands", "cmd_bench", "benchmarks_dir"]


def benchmarks_dir() -> Path:
    """The checkout's `benchmarks/` (beside the `p402` package)."""
    return Path(__file__).resolve().parents[2] / "benchmarks"


def add_commands(sub: Any, add: Any, store_args: Any, parser_class: Any) -> None:
    p = add("bench", cmd_bench, "measure p402's overhead with budgets on, beside a bare proxy and LiteLLM")
    p.add_argument("--quick", action="store_true", help="short phases (1.5 s): a run of about 2 minutes (default: about 12 minutes)")
    p.add_argument("--out", default=None, help="where latest.json and latest.png go (default: benchmarks/results)")
    p.add_argument("--no-litellm", action="store_true", help="do not install or measure the LiteLLM proxy")


def cmd_bench(args: argparse.Namespace) -> int:
    where = benchmarks_dir()
    if not (where / "run.py").is_file():
        raise CliError(f"p402 bench runs from a source checkout: {where} not found", 2)
    if str(where.parent) not in sys.path:
        sys.path.insert(0, str(where.parent))
    from benchmarks import run

    out = Path(args.out) if args.out else where / "results"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"--out {out}: {exc.strerror}", 2) from None
    argv = ["--out", str(out)] + (["--quick"] if args.quick else []) + (["--no-litellm"] if args.no_litellm else [])
    try:
        return int(run.main(argv))
    except RuntimeError as exc:  # a process of the benchmark failed to start; its log tail is in the message
        raise CliError(f"bench failed: {exc}") from None
