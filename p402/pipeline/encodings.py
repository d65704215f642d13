"""The o200k/cl100k tokenizers, loaded offline: tiktoken over the rank files that ship with `bpe-openai`.

Why tiktoken, and why these files. `bpe-openai`'s own tokenizer gave identical
counts but held 135 MB of Rust tables for o200k (more than half of p402's
resident memory); tiktoken holds the same encoding in ~45 MB once its Python
copy of the ranks is dropped (measured: +135 MB vs +45 MB RSS after load; a
40-token prompt in 2.8 us instead of 5.7 us). tiktoken normally downloads its
rank files from a public blob store; `bpe-openai` ships byte-identical copies
(`bpe_openai/data/*.tiktoken.gz`, same SHA-256 as tiktoken expects), so we
decompress them once into a local cache directory that tiktoken reads
(`TIKTOKEN_CACHE_DIR`, files named by the SHA-1 of the blob URL).

Nothing is ever downloaded: the cache file is checked against tiktoken's
expected SHA-256 before tiktoken sees it, and while tiktoken loads, `requests`
(its only way to the network) is made unimportable, so a missing or wrong file
raises `TokenizerUnavailable` instead of reaching for the internet.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["load_encoding", "TokenizerUnavailable", "ENCODINGS", "cache_dir"]


class TokenizerUnavailable(RuntimeError):
    """A rank file is missing or corrupt; p402 refuses to download one."""


# name -> (the URL tiktoken would fetch, the SHA-256 it expects): tiktoken 0.14.0's
# `tiktoken_ext.openai_public`. The URL only names the cache file; it is never fetched.
ENCODINGS: dict[str, tuple[str, str]] = {
    "o200k_base": ("https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
                   "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
    "cl100k_base": ("https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
                    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
}
_LOCK = threading.Lock()  # tiktoken reads an environment variable: load one encoding at a time


def cache_dir() -> Path:
    """Where the decompressed rank files live: `$P402_CACHE_DIR/tiktoken`, else `~/.cache/p402/tiktoken`."""
    explicit = os.environ.get("P402_CACHE_DIR")
    if explicit:
        return Path(explicit) / "tiktoken"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "p402" / "tiktoken"


def _fallback_dir() -> Path:
    # A read-only home (containers) must not stop the gateway: the files are verified by
    # SHA-256 before use, so a shared temporary directory is safe.
    return Path(tempfile.gettempdir()) / f"p402-tiktoken-{os.getuid()}"


def _bundled(name: str) -> Path:
    # find_spec locates the package without importing it: importing bpe_openai would load its
    # own Rust tokenizer module, which is exactly what we do not want in memory.
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerUnavailable("the bpe-openai package (which ships the tokenizer files) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / f"{name}.tiktoken.gz"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ensure_cached(name: str, directory: Path) -> None:
    """Decompress the bundled rank file into `directory` unless a correct copy is already there."""
    url, expected = ENCODINGS[name]
    target = directory / hashlib.sha1(url.encode()).hexdigest()
    try:
        if _sha256(target.read_bytes()) == expected:
            return
    except OSError:
        pass
    try:
        data = gzip.decompress(_bundled(name).read_bytes())
    except OSError as exc:
        raise TokenizerUnavailable(f"cannot read the bundled {name} tokenizer file: {exc}") from exc
    if _sha256(data) != expected:
        raise TokenizerUnavailable(f"the bundled {name} tokenizer file does not match tiktoken's SHA-256")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{target.name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)  # atomic: concurrent workers never see half a file
    except OSError as exc:
        raise TokenizerUnavailable(f"cannot write the {name} tokenizer cache in {directory}: {exc}") from exc


@contextmanager
def _offline(directory: Path) -> Iterator[None]:
    """tiktoken reads `directory` and cannot import `requests` (so it cannot download)."""
    saved_env = os.environ.get("TIKTOKEN_CACHE_DIR")
    saved_requests = sys.modules.get("requests", _MISSING)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
    sys.modules["requests"] = None  # type: ignore[assignment]  # `import requests` now raises ImportError
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved_env
        if saved_requests is _MISSING:
            sys.modules.pop("requests", None)
        else:
            sys.modules["requests"] = saved_requests  # type: ignore[assignment]


_MISSING = object()


def load_encoding(name: str, directory: Path | None = None) -> Any:
    """A tiktoken `Encoding` for `name` (o200k_base or cl100k_base), built without the network."""
    if name not in ENCODINGS:
        raise TokenizerUnavailable(f"unknown tokenizer {name!r} (expected one of {', '.join(ENCODINGS)})")
    with _LOCK:
        if directory is None:
            directory = cache_dir()
            try:
                _ensure_cached(name, directory)
            except TokenizerUnavailable:
                directory = _fallback_dir()
                _ensure_cached(name, directory)
        else:
            _ensure_cached(name, directory)
        import tiktoken

        try:
            with _offline(directory):
                encoding = tiktoken.get_encoding(name)
        except ImportError as exc:  # tiktoken tried to download: the cache file vanished under us
            raise TokenizerUnavailable(f"the {name} tokenizer file in {directory} is unusable; "
                                       "p402 does not download tokenizers") from exc
    # tiktoken keeps a Python dict of all ranks (~30 MB for o200k) only to pickle the
    # encoding; counting uses the Rust copy. We never pickle it, so drop the dict.
    encoding._mergeable_ranks = {}
    return encoding
