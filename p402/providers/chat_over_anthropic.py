"""Serve an OpenAI Chat Completions client from Anthropic's Messages API: the translation.

Request: system and developer messages become `system`; turns are merged so
roles alternate (Anthropic requires it); `tool` messages become `tool_result`
blocks in a user turn; assistant `tool_calls` become `tool_use` blocks; image
parts become image blocks (data URLs as base64 sources); `stop`, tools,
`tool_choice`, `parallel_tool_calls` and `user` are mapped; fields Anthropic
has no equivalent for are dropped.

Answer: a `message` becomes a `chat.completion`; stream events become
`chat.completion.chunk`s. Thinking is not relayed (Chat Completions has no
place for it) but is billed as output, as Anthropic bills it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from p402.pipeline.ports import Usage
from p402.providers.chat_format import ChunkFrames, completion, parse_arguments, text_of, translation

__all__ = ["messages_request_from_chat", "completion_from_message", "ChunkWriter", "FINISH_REASONS",
           "DEFAULT_MAX_TOKENS"]

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; the pipeline normally sets it
# Anthropic stop_reason -> OpenAI finish_reason.
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "refusal": "content_filter", "pause_turn": "stop", "model_context_window_exceeded": "length"}


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url", "") if isinstance(image, dict) else str(image or "")
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url":
            blocks.append(_image_block(part))
    return blocks


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = _user_blocks(message.get("content"))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""),
                       "input": parse_arguments(fn.get("arguments"))})
    return blocks


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)  # Anthropic wants user and assistant turns to alternate
    else:
        turns.append({"role": role, "content": blocks})


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    mapped: dict[str, Any] | None = None
    if isinstance(choice, str):
        mapped = {"type": {"auto": "auto", "required": "any", "none": "none"}.get(choice, "auto")}
    elif isinstance(choice, dict):
        mapped = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    if parallel is False:
        mapped = {**(mapped or {"type": "auto"}), "disable_parallel_tool_use": True}
    return mapped


@translation
def messages_request_from_chat(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI Chat Completions request as an Anthropic Messages request."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in body.get("messages") or ():
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(text_of(m.get("content")))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(m))
        elif role == "tool":
            _append(turns, "user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id", ""),
                                     "content": text_of(m.get("content"))}])
        else:
            _append(turns, "user", _user_blocks(m.get("content")))
    bound = body.get("max_completion_tokens", body.get("max_tokens"))
    out: dict[str, Any] = {"model": body.get("model"), "max_tokens": bound or DEFAULT_MAX_TOKENS, "messages": turns}
    if any(system):
        out["system"] = "\n\n".join(s for s in system if s)
    if body.get("temperature") is not None:
        out["temperature"] = min(float(body["temperature"]), 1.0)  # OpenAI allows up to 2, Anthropic 1
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("stream"):
        out["stream"] = True
    tools = [t["function"] for t in body.get("tools") or ()
             if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if tools:
        out["tools"] = [{"name": f.get("name", ""), "description": f.get("description", ""),
                         "input_schema": f.get("parameters") or {"type": "object", "properties": {}}}
                        for f in tools]
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    return out


def _chat_id(message_id: Any) -> str:
    return "chatcmpl-" + str(message_id or f"p402{time.time_ns()}")


def completion_from_message(doc: dict[str, Any], usage: Usage) -> dict[str, Any]:
    """An Anthropic `message` as a `chat.completion`."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in doc.get("content") or ():
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id", ""), "type": "function",
                          "function": {"name": block.get("name", ""),
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    finish = FINISH_REASONS.get(str(doc.get("stop_reason")), "stop")
    return completion(_chat_id(doc.get("id")), str(doc.get("model") or ""), "".join(text), calls, finish, usage)


class ChunkWriter:
    """Anthropic stream events in, `chat.completion.chunk` frames out."""

    def __init__(self, usage: Usage, client_wants_usage: bool, model: str) -> None:
        self.frames = ChunkFrames(usage, client_wants_usage, model)
        self.tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self.finish = "stop"

    def event(self, doc: dict[str, Any]) -> list[bytes]:
        """Frames for one Anthropic event (`message_stop` ends the stream with `[DONE]`)."""
        kind = doc.get("type")
        f = self.frames
        if kind == "message_start":
            message = doc.get("message") or {}
            f.id, f.model = _chat_id(message.get("id")), message.get("model") or f.model
            return [f.role()]
        if kind == "content_block_start":
            block = doc.get("content_block") or {}
            if block.get("type") != "tool_use":
                return []
            index = self.tools[int(doc.get("index", 0))] = len(self.tools)
            return [f.tool_start(index, block.get("id", ""), block.get("name", ""))]
        if kind == "content_block_delta":
            delta = doc.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [f.text(delta.get("text", ""))]
            if delta.get("type") == "input_json_delta" and int(doc.get("index", 0)) in self.tools:
                return [f.tool_arguments(self.tools[int(doc.get("index", 0))], delta.get("partial_json", ""))]
            return []  # thinking and signatures have no place in a chat chunk
        if kind == "message_delta":
            self.finish = FINISH_REASONS.get(str((doc.get("delta") or {}).get("stop_reason")), "stop")
            return []
        if kind == "message_stop":
            return f.end(self.finish)
        return []  # ping, content_block_stop
