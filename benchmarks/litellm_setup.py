"""The LiteLLM proxy, installed from PyPI into its own virtual environment at bench time.

Pinned (`LITELLM_VERSION`) and cached: the venv is reused while it holds that
version. 1.106.12 is the newest release whose `[proxy]` extra installs from
PyPI alone (later ones need `litellm-proxy-extras` builds that are not
published there) and it predates the compromised 1.107.0 release.

LiteLLM runs as its documented quick start does without a database: one
worker, a master key, a `model_list` pointing at the fake upstream. Without a
database it has no virtual keys and no budgets, so it does *less* per request
than p402 does here; the comparison says so. If the install fails, the bench
reports LiteLLM as unavailable and goes on.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from benchmarks.org import MODEL, SLOW_MODEL

__all__ = ["LITELLM_VERSION", "VENV", "MASTER_KEY", "ensure_litellm", "litellm_config", "write_litellm_config", "litellm_argv",
           "LITELLM_ENV"]

LITELLM_VERSION = "1.106.12"
VENV = Path("/tmp/p402-bench-litellm")
# LiteLLM refuses to start without a master key that looks strong.
MASTER_KEY = "sk-litellm-bench-4f8a9c2e7b1d6a3f5e0c9b8a7d6e5f4a"
INSTALL_TIMEOUT_S = 900
# Quiet logs, the bundled price map (no network fetch at start), no telemetry.
LITELLM_ENV = {"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}


def _installed_version(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    probe = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                           capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_litellm(venv: Path = VENV, version: str = LITELLM_VERSION, log: Path | None = None) -> tuple[bool, str]:
    """(available, detail). Creates or reuses the venv; installs `litellm[proxy]==version` when missing."""
    if _installed_version(venv) == version:
        return True, f"litellm {version} (cached in {venv})"
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run(["python3", "-m", "venv", str(venv)], check=True, capture_output=True,
                           timeout=INSTALL_TIMEOUT_S)
        done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                               f"litellm[proxy]=={version}"], capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"could not install litellm[proxy]=={version}: {exc}"
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    if done.returncode != 0 or _installed_version(venv) != version:
        last = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        return False, f"pip install litellm[proxy]=={version} failed: {last}"
    return True, f"litellm {version} (installed into {venv})"


def litellm_config(upstream: str) -> dict[str, object]:
    """The proxy config: both benchmark models routed to the fake upstream (`http://host:port/v1`)."""
    def entry(name: str) -> dict[str, object]:
        return {"model_name": name, "litellm_params": {"model": f"openai/{name}", "api_base": upstream,
                                                        "api_key": "sk-fake-upstream"}}

    return {"model_list": [entry(MODEL), entry(SLOW_MODEL)],
            "litellm_settings": {"telemetry": False, "drop_params": True},
            "general_settings": {"master_key": MASTER_KEY}}


def write_litellm_config(path: Path, upstream: str) -> Path:
    path.write_text(yaml.safe_dump(litellm_config(upstream), sort_keys=False))
    return path


def litellm_argv(config_path: Path, port: int, venv: Path = VENV) -> list[str]:
    """One worker, like the other systems under test (each gets one pinned core)."""
    return [str(venv / "bin" / "litellm"), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1"]
