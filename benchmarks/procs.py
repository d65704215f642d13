"""Processes for the benchmark: start pinned to CPUs, wait until they listen, measure memory, stop.

Pinning: the machine has 2 cores. The system under test (p402, the bare
proxy or LiteLLM, one process each) gets CPU 1 to itself; the fake upstream
and the load generator share CPU 0. Each system under test therefore has one
core, like a single uvicorn worker in production, and never competes with the
load it is measured under.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["ALL_CPUS", "SUT_CPUS", "LOAD_CPUS", "free_port", "spawn", "wait_listening", "stop", "rss_bytes", "RssSampler",
           "pin_self", "cpus", "move", "tree"]


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


_ALL = cpus()  # taken at import, before anything pins this process
ALL_CPUS = tuple(_ALL)
# With one CPU there is nothing to separate: everything shares it (and the docs say so).
SUT_CPUS = {_ALL[-1]}
LOAD_CPUS = {_ALL[0]} if len(_ALL) > 1 else set(_ALL)
FD_LIMIT = 16_384  # 1,000 client streams plus as many upstream connections, with room


def pin_self(cpus_: set[int]) -> None:
    os.sched_setaffinity(0, cpus_)
    _raise_fd_limit()


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FD_LIMIT:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(FD_LIMIT, hard), hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(argv: Sequence[str], cpus_: set[int], log: Path, env: dict[str, str] | None = None,
          cwd: str | Path | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` pinned to `cpus_`, output to `log`."""
    def setup() -> None:  # runs in the child before exec
        os.sched_setaffinity(0, cpus_)
        _raise_fd_limit()
        os.setsid()  # its own process group, so stop() also reaches any workers it forks

    out = open(log, "wb")
    try:
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                cwd=cwd, preexec_fn=setup)
    finally:
        out.close()


async def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float, log: Path,
                         ready: Callable[[], bool] | None = None) -> None:
    """Poll until the port accepts connections; raise with the log's tail if the process dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{Path(proc.args[0]).name} exited with {proc.returncode}: {_tail(log)}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            if ready is None or ready():
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listened on port {port} within {timeout_s:.0f} s: {_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout_s)
    except ProcessLookupError:
        pass


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            out += [int(c) for c in text]
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def move(pid: int, cpus_: set[int]) -> None:
    """Re-pin every thread of a process tree (sched_setaffinity on a pid moves only that thread)."""
    for p in tree(pid):
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                os.sched_setaffinity(int(task), cpus_)
        except OSError:
            continue  # a thread that ended meanwhile


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (LiteLLM may fork workers)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
        todo += _children(p)
    return total


class RssSampler:
    """Samples a process tree's RSS every `interval_s` on the event loop; keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self.pid))
            await asyncio.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.peak = rss_bytes(self.pid)
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.peak = max(self.peak, rss_bytes(self.pid))
