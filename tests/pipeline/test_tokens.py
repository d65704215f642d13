"""Input bounds: never below what the provider will bill for the request."""

from __future__ import annotations

import orjson

from p402.pipeline.tokens import UNSEEN, chat_input_bound, count_text, messages_input_bound

ANTHROPIC_TOOL_PROMPT = 346  # the most tokens Anthropic documents for its tool-use system prompt (current models)
TOOL = {"name": "f", "description": "d", "input_schema": {"type": "object"}}
FUNCTION = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}


def test_a_request_with_tools_reserves_for_the_instructions_the_provider_adds() -> None:
    prompt = [{"role": "user", "content": "hi"}]
    for tokenizer in ("o200k_base", "bytes"):
        plain = messages_input_bound({"messages": prompt}, tokenizer)
        with_tool = messages_input_bound({"messages": prompt, "tools": [TOOL]}, tokenizer)
        assert with_tool - plain >= ANTHROPIC_TOOL_PROMPT + count_text(orjson.dumps([TOOL]).decode(), tokenizer)
        # A chat request may be served by Anthropic too (translated): the same room.
        plain = chat_input_bound({"messages": prompt}, tokenizer)
        with_tool = chat_input_bound({"messages": prompt, "tools": [FUNCTION]}, tokenizer)
        assert with_tool - plain >= ANTHROPIC_TOOL_PROMPT + count_text(orjson.dumps([FUNCTION]).decode(), tokenizer)


def test_input_the_request_only_refers_to_is_marked_unseen_and_text_is_not() -> None:
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}}
    text = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}}
    assert messages_input_bound({"messages": [{"role": "user", "content": [pdf]}]}, "bytes") >= UNSEEN
    assert messages_input_bound({"messages": [{"role": "user", "content": [text]}]}, "bytes") < UNSEEN
    assert messages_input_bound({"messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
                                "bytes") >= UNSEEN
    assert messages_input_bound({"messages": [], "mcp_servers": [{"type": "url", "url": "https://x"}]}, "bytes") >= UNSEEN
    file_part = {"type": "file", "file": {"file_id": "file-1"}}
    assert chat_input_bound({"messages": [{"role": "user", "content": [file_part]}]}, "o200k_base") >= UNSEEN
    assert chat_input_bound({"messages": [], "web_search_options": {}}, "o200k_base") >= UNSEEN
    assert chat_input_bound({"messages": [{"role": "user", "content": "a file, in words"}]}, "o200k_base") < UNSEEN


def test_each_image_is_bounded_by_what_the_model_counts_for_one() -> None:
    from p402.config import parse_config
    from tests.gatewaykit import org
    from pathlib import Path
    import tempfile
    raw = org(Path(tempfile.gettempdir()))
    raw["models"].append({"name": "mini-vision", "provider": "simulated", "upstream": "gpt-4o-mini-2024-07-18",
                          "price": {"input_per_mtok": "0.15", "output_per_mtok": "0.60"}})
    raw["models"].append({"name": "own", "provider": "simulated", "image_tokens": 7_000,
                          "price": {"input_per_mtok": "1", "output_per_mtok": "1"}})
    models = {m.name: m for m in parse_config(raw).models}
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}}
    body = {"messages": [{"role": "user", "content": [image, image]}]}
    text_only = chat_input_bound({"messages": [{"role": "user", "content": []}]}, "o200k_base")
    # gpt-4o-mini counts an image as 2,833 + 5,667 a tile (OpenAI's docs): far above gpt-4o's 85 + 170 a tile.
    mini = models["mini-vision"]
    assert chat_input_bound(body, "o200k_base", mini.image_tokens) - text_only == 2 * (2_833 + 5_667 * 16)
    assert chat_input_bound(body, "o200k_base", models["gpt-4o"].image_tokens) - text_only == 2 * 2_805
    assert chat_input_bound(body, "o200k_base", models["own"].image_tokens) - text_only == 2 * 7_000
