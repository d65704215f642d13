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
