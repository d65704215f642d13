"""Upper bounds on a request's input tokens, offline.

OpenAI-family models are counted exactly (plus the chat format's per-message
overhead) with `tiktoken`, reading the o200k/cl100k rank files that ship inside
the `bpe-openai` package (see `p402.pipeline.encodings`: offline, never a download).
For other models no public tokenizer exists offline, so the bound is the UTF-8
byte count: a byte-level BPE never makes more tokens than bytes. Images count a
fixed bound each (`IMAGE_TOKEN_BOUND`).

Some input cannot be counted from the request at all: a file or document the provider
reads by reference or renders page by page (OpenAI `file` parts, Anthropic `document`
blocks other than plain text), and server tools whose results the provider adds to the
prompt (web search, web fetch, code execution, MCP servers). A request carrying any of
these bounds at `UNSEEN` or more; the gateway then bounds it by the model's context window
(`Gateway._attempt`), the one limit the provider itself enforces.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from p402.core.policy import IMAGE_TOKENS
from p402.pipeline.encodings import load_encoding

__all__ = ["count_text", "chat_input_bound", "messages_input_bound", "embeddings_input_bound", "IMAGE_TOKEN_BOUND",
           "TOOLS_PROMPT_BOUND", "UNSEEN", "warm"]

IMAGE_TOKEN_BOUND = IMAGE_TOKENS  # the default per image (core.policy); a model may set its own
_PER_MESSAGE = 4  # OpenAI chat format: role and separators per message
_PER_REPLY = 3  # every reply is primed with <|start|>assistant<|message|>
# A request with tools also pays for the instructions a provider adds to the prompt to use them,
# which the request does not carry (Anthropic documents 313-346 tokens on current models; OpenAI's
# function formatting is a few per tool): bounded from above.
TOOLS_PROMPT_BOUND = 600
# Added to a bound for input the request only refers to (module docstring): far above any
# context window, so a bound at or above it means "not countable from the request".
UNSEEN = 1 << 48
_UNSEEN_PARTS = frozenset({"file", "input_file"})  # OpenAI: a PDF by id or inline, read page by page
_COUNTABLE_DOCUMENTS = frozenset({"text", "content"})  # Anthropic document sources given as text
_SERVER_TOOLS = ("web_search", "web_fetch", "code_execution")  # Anthropic tool types run by the provider


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    return load_encoding(name)


def warm(names: tuple[str, ...] = ("o200k_base",)) -> None:
    """Load encodings before serving, so the first request does not pay for it."""
    for name in names:
        if name != "bytes":
            _encoding(name).encode("warm up")


# Above this many characters a text is bounded by its UTF-8 bytes instead of tokenized: every
# token is at least one byte, so the bound still holds, and a multi-megabyte prompt no longer
# holds the event loop for seconds (tokenizing 8 MB took ~6 s here).
TOKENIZE_LIMIT_CHARS = 200_000


def count_text(text: str, tokenizer: str) -> int:
    if not text:
        return 0
    if tokenizer == "bytes" or len(text) > TOKENIZE_LIMIT_CHARS:
        return len(text.encode())
    return len(_encoding(tokenizer).encode_ordinary(text))


def _content_tokens(content: Any, tokenizer: str, image_tokens: int = IMAGE_TOKEN_BOUND) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text(content, tokenizer)
    total = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                total += count_text(str(part), tokenizer)
                continue
            kind = part.get("type")
            if kind in ("image_url", "image", "input_image"):
                total += image_tokens
            elif kind in _UNSEEN_PARTS or (kind == "document" and not _text_source(part)):
                total += UNSEEN
            elif isinstance(part.get("text"), str):
                total += count_text(part["text"], tokenizer)
            else:
                total += count_text(orjson.dumps(part).decode(), tokenizer)
        return total
    return count_text(orjson.dumps(content).decode(), tokenizer)


def _text_source(block: dict[str, Any]) -> bool:
    source = block.get("source")
    return isinstance(source, dict) and source.get("type") in _COUNTABLE_DOCUMENTS


def chat_input_bound(body: dict[str, Any], tokenizer: str, image_tokens: int = IMAGE_TOKEN_BOUND) -> int:
    """Input tokens of an OpenAI Chat Completions request, from above."""
    total = _PER_REPLY
    for m in body.get("messages") or ():
        if not isinstance(m, dict):
            continue
        total += _PER_MESSAGE + _content_tokens(m.get("content"), tokenizer, image_tokens)
        if m.get("name"):
            total += count_text(str(m["name"]), tokenizer) + 1
        if m.get("tool_calls"):
            total += count_text(orjson.dumps(m["tool_calls"]).decode(), tokenizer)
    for extra in ("tools", "functions", "response_format"):
        if body.get(extra):
            total += count_text(orjson.dumps(body[extra]).decode(), tokenizer)
    if body.get("tools") or body.get("functions"):
        total += TOOLS_PROMPT_BOUND
    if body.get("web_search_options") is not None:  # search results join the prompt
        total += UNSEEN
    return total


def messages_input_bound(body: dict[str, Any], tokenizer: str, image_tokens: int = IMAGE_TOKEN_BOUND) -> int:
    """Input tokens of an Anthropic Messages request, from above."""
    total = _PER_REPLY + _content_tokens(body.get("system"), tokenizer, image_tokens)
    for m in body.get("messages") or ():
        if isinstance(m, dict):
            total += _PER_MESSAGE + _content_tokens(m.get("content"), tokenizer, image_tokens)
    tools = body.get("tools")
    if tools:
        total += count_text(orjson.dumps(tools).decode(), tokenizer) + TOOLS_PROMPT_BOUND
        if isinstance(tools, list) and any(isinstance(t, dict) and str(t.get("type", "")).startswith(_SERVER_TOOLS)
                                           for t in tools):
            total += UNSEEN
    if body.get("mcp_servers"):
        total += UNSEEN
    return total


def embeddings_input_bound(body: dict[str, Any], tokenizer: str, image_tokens: int = IMAGE_TOKEN_BOUND) -> int:
    """Input tokens of an OpenAI Embeddings request (strings or token arrays)."""
    value = body.get("input")
    if isinstance(value, str):
        return count_text(value, tokenizer)
    total = 0
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                total += count_text(item, tokenizer)
            elif isinstance(item, int):
                total += 1
            elif isinstance(item, list):
                total += len(item)
    return total
