"""`p402 serve --workers N`: several processes share one SQLite store and still never overspend."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import yaml

from p402.pipeline.tokens import chat_input_bound
from tests.gatewaykit import SECRETS, free_port, org

BODY = {"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "race"}]}


def test_worker_processes_share_the_store_and_the_caps(tmp_path: Path) -> None:
    from p402.core.money import format_usd
    estimate = chat_input_bound(BODY, "o200k_base") * 150 + 10 * 600
    raw = org(tmp_path, [{"id": "eng", "scope": "department:eng", "cap_usd": format_usd(estimate * 25 // 2),
                          "period": "day"}])
    config = tmp_path / "p402.yaml"
    config.write_text(yaml.safe_dump(raw))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "p402.cli.main", "serve", "--config", str(config), "--port",
                             str(port), "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        while time.time() < deadline and len(_children(proc.pid)) < 2:  # both workers up, not just the first
            time.sleep(0.1)
        assert len(_children(proc.pid)) >= 2, "p402 serve --workers 2 did not start two worker processes"
        statuses = asyncio.run(_race(f"http://127.0.0.1:{port}", 60))
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert statuses.count(200) == 12 and set(statuses) <= {200, 402}, (statuses, err.decode()[-2000:])
    verify = subprocess.run([sys.executable, "-m", "p402.cli.main", "ledger", "verify", "--config", str(config)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert "ledger intact" in verify.stdout


async def _race(base: str, n: int) -> list[int]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
        async def one(i: int) -> int:
            who = ("alice", "bob")[i % 2]
            async with session.post(f"{base}/v1/chat/completions", json=BODY,
                                    headers={"Authorization": f"Bearer {SECRETS[who]}"}) as r:
                await r.read()
                return r.status
        return list(await asyncio.gather(*(one(i) for i in range(n))))


def _children(pid: int) -> list[int]:
    """uvicorn's worker processes: live children of `pid` started by multiprocessing's spawn
    (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # it ended while we looked
    return found
