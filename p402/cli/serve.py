"""`p402 serve` and `p402 demo`."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from p402.cli.main import CliError
from p402.config import Config, load_config

__all__ = ["cmd_serve", "cmd_demo", "run_server", "SHUTDOWN_GRACE_S"]

# On shutdown, in-flight requests get this long to finish (streams settle when cut).
SHUTDOWN_GRACE_S = 30


def _check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise CliError(f"--port {port} is not a TCP port (1-65535)", 2)


def cmd_serve(args: argparse.Namespace) -> int:
    _check_port(args.port)
    if args.workers < 1:
        raise CliError("--workers must be at least 1", 2)
    config = load_config(args.config)
    _preflight(config)
    import uvicorn
    if args.workers == 1:
        from p402.web.app import GatewayApp
        uvicorn.run(GatewayApp(config, server=True), host=args.host, port=args.port, loop="uvloop",
                    http="httptools", log_level="warning", access_log=False, lifespan="on",
                    timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
        return 0
    # Several processes share the store; apply the config once here, not in each worker.
    from p402.ops.apply import apply_config
    from p402.wiring import open_store

    async def apply_once() -> None:
        store = await open_store(config.store)
        try:
            await apply_config(store, config, actor=f"config:{config.source}")
        finally:
            await store.close()
    asyncio.run(apply_once())
    os.environ["P402_CONFIG"] = str(Path(args.config).resolve())
    os.environ["P402_APPLY"] = "0"
    uvicorn.run("p402.web.app:factory", factory=True, host=args.host, port=args.port, workers=args.workers,
                loop="uvloop", http="httptools", log_level="warning", access_log=False, lifespan="on",
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    return 0


def _preflight(config: Config) -> None:
    """Fail before uvicorn starts on what the server would fail on at start-up (a provider
    setting, an unreachable store): one `p402:` line and the CLI's exit code, not uvicorn's."""
    from p402.wiring import build_providers, open_store

    async def check() -> None:
        for provider in build_providers(config).values():
            await provider.close()
        store = await open_store(config.store)
        try:
            await store.write_out()  # reads the store's state as serving would (a damaged file fails here)
        finally:
            await store.close()
    asyncio.run(check())


async def run_server(app: Any, host: str, port: int) -> tuple[Any, asyncio.Task[Any]]:
    """Start uvicorn inside the running loop; returns (server, task) once it listens."""
    import uvicorn
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           lifespan="on", http="httptools",
                                           timeout_graceful_shutdown=SHUTDOWN_GRACE_S))
    # The demo runs the server inside its own asyncio.run(): Ctrl-C belongs to the demo.
    setattr(server, "install_signal_handlers", lambda: None)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise CliError(f"the server did not start on {host}:{port}")
        await asyncio.sleep(0.02)
    return server, task


def cmd_demo(args: argparse.Namespace) -> int:
    _check_port(args.port)
    if args.rate <= 0:
        raise CliError("--rate must be positive", 2)
    from p402.cli.demo import demo_config, run_demo
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="p402-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    admin_token = "p402-demo-" + secrets.token_urlsafe(16)
    config: Config = demo_config(workdir, admin_token)
    import uvloop
    try:
        uvloop.run(run_demo(config, workdir, admin_token, args.port, args.duration, args.rate))
    except OSError as exc:
        raise CliError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror} (try --port)") from None
    return 0
