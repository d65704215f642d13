"""The tokenizers: tiktoken counts exactly what bpe-openai counted, loads offline, and never downloads.

Loading checks run in a fresh interpreter: tiktoken caches encodings per process,
so only a new process shows what a cold start reads (and whether it would reach
for the network).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from p402.pipeline.encodings import load_encoding
from p402.pipeline.tokens import count_text

TEXTS = [
    "Hello world",
    "You are a helpful assistant. Summarise the following support ticket in two sentences.",
    "def f(x):\n    return x**2  # émoji 🤖 ünïcödé 日本語のテキスト and Ελληνικά",
    "  leading and trailing whitespace \r\n\t\n",
    "1234567890 3.14159 -42 0x1F 1e10",
    "I'm sure they'll say it's what we've done; DON'T you THINK so?",
    "<|endoftext|> is only a special token when asked for",
    "a" * 5000,
    " ".join(str(i) for i in range(500)),
]


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_counts_are_identical_to_bpe_openai(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # bpe-openai's own deprecated resource API
        import bpe_openai

        reference = bpe_openai.get_encoding(name)
    for text in TEXTS:
        assert count_text(text, name) == len(reference.encode_ordinary(text)), text[:40]


def _run(code: str, cache: Path) -> subprocess.CompletedProcess[str]:
    # A proxy that refuses every connection: any attempt to download fails visibly.
    env = {"PATH": "/usr/bin:/bin", "P402_CACHE_DIR": str(cache), "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HOME": str(cache)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])


def test_a_cold_start_builds_its_cache_from_the_bundled_files_without_the_network(tmp_path: Path) -> None:
    done = _run("""
        from p402.pipeline.tokens import count_text
        print(count_text("Hello world, this is p402 counting tokens", "o200k_base"))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(count_text("Hello world, this is p402 counting tokens", "o200k_base"))
    assert len(list((tmp_path / "tiktoken").iterdir())) == 1  # the o200k file, decompressed once


def test_a_corrupt_cache_file_is_replaced_from_the_bundle(tmp_path: Path) -> None:
    from p402.pipeline.encodings import ENCODINGS
    import hashlib

    cache = tmp_path / "tiktoken"
    cache.mkdir()
    target = cache / hashlib.sha1(ENCODINGS["cl100k_base"][0].encode()).hexdigest()
    target.write_bytes(b"not a rank file")
    done = _run("""
        from p402.pipeline.tokens import count_text
        print(count_text("Hello world", "cl100k_base"))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == ENCODINGS["cl100k_base"][1]


def test_without_the_bundled_file_loading_fails_loudly_instead_of_downloading(tmp_path: Path) -> None:
    done = _run("""
        from pathlib import Path
        from p402.pipeline import encodings
        encodings._bundled = lambda name: Path("/nonexistent") / name
        try:
            encodings.load_encoding("o200k_base")
        except encodings.TokenizerUnavailable as exc:
            print("refused:", exc)
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: cannot read the bundled o200k_base tokenizer file")


def test_tiktoken_cannot_reach_the_network_while_p402_loads_it(tmp_path: Path) -> None:
    # The guard under the SHA-256 check: should the cache file vanish between the check and
    # tiktoken's read, tiktoken's download path cannot even import its HTTP client.
    done = _run("""
        from pathlib import Path
        import tiktoken
        from p402.pipeline.encodings import _offline
        with _offline(Path("/nonexistent-cache")):
            try:
                tiktoken.get_encoding("cl100k_base")
            except ImportError:
                print("no download")
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no download"


def test_a_text_too_long_to_tokenize_inline_is_bounded_by_its_bytes() -> None:
    from p402.pipeline.tokens import TOKENIZE_LIMIT_CHARS
    text = "na\u00efve \u4e2d\u6587 " * (TOKENIZE_LIMIT_CHARS // 8)
    assert len(text) > TOKENIZE_LIMIT_CHARS
    # Still an upper bound of the real count (every token is at least one byte), without tokenizing:
    # the UTF-8 length, never less than what the tokenizer would have said.
    real = len(load_encoding("o200k_base").encode_ordinary(text))
    assert count_text(text, "o200k_base") == len(text.encode()) >= real
    short = text[:1000]  # tokenized inline: the exact count, well under the byte bound
    assert count_text(short, "o200k_base") == len(load_encoding("o200k_base").encode_ordinary(short))
    assert count_text(short, "o200k_base") < len(short.encode())
