"""Serve an OpenAI Chat Completions client from Bedrock's Converse API: the translation.

Request: system messages become `system` blocks; turns become `messages` with
`text`, `image` (base64 bytes; Converse cannot fetch URLs, so URL images are
dropped), `toolUse` and `toolResult` blocks; consecutive turns of one role are
merged (Converse requires alternation); `max_tokens`, `temperature`, `top_p`
and `stop` go to `inferenceConfig`; tools to `toolConfig` (`tool_choice`
`required` -> `any`, a named function -> `tool`; Converse has no "none", so it
keeps the default `auto`).

Answer: `output.message` becomes the choice; reasoning blocks are billed but
not relayed. Usage: `inputTokens` (fresh), `cacheReadInputTokens`,
`cacheWriteInputTokens`, `outputTokens`; in a stream they come in the final
`metadata` event.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from p402.pipeline.ports import Usage
from p402.providers.chat_format import ChunkFrames, completion, parse_arguments, translation

__all__ = ["converse_request_from_chat", "completion_from_converse", "ConverseChunkWriter", "read_converse_usage",
           "FINISH_REASONS"]

# Converse stopReason -> OpenAI finish_reason.
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
                  "model_context_window_exceeded": "length"}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def read_converse_usage(report: Mapping[str, Any], usage: Usage) -> None:
    """Fill `usage` from a Converse `usage` object (TokenUsage)."""
    usage.input_tokens = _int(report.get("inputTokens"))
    usage.output_tokens = _int(report.get("outputTokens"))
    usage.cache_read_tokens = _int(report.get("cacheReadInputTokens"))
    usage.cache_write_tokens = _int(report.get("cacheWriteInputTokens"))
    usage.reported = True


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content or ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and part.get("text"):
            out.append({"text": part["text"]})
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url", "") if isinstance(image, dict) else str(image or "")
            if url.startswith("data:") and ";base64," in url:
                mime, data = url[5:].split(";base64,", 1)
                out.append({"image": {"format": _IMAGE_FORMATS.get(mime, "png"), "source": {"bytes": data}}})
    return out


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _tool_config(tools: list[dict[str, Any]], choice: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"tools": [{"toolSpec": {
        "name": f.get("name", ""), "description": f.get("description") or f.get("name", ""),
        "inputSchema": {"json": f.get("parameters") or {"type": "object", "properties": {}}}}} for f in tools]}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        config["toolChoice"] = {"tool": {"name": (choice.get("function") or {}).get("name", "")}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    return config


@translation
def converse_request_from_chat(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI Chat Completions request as a Converse request (the model id goes in the URL)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for m in body.get("messages") or ():
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(b for b in _blocks(m.get("content")) if "text" in b)
        elif role == "assistant":
            blocks = _blocks(m.get("content"))
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                blocks.append({"toolUse": {"toolUseId": call.get("id", ""), "name": fn.get("name", ""),
                                           "input": parse_arguments(fn.get("arguments"))}})
            _append(turns, "assistant", blocks)
        elif role == "tool":
            text = "".join(b.get("text", "") for b in _blocks(m.get("content")))
            _append(turns, "user", [{"toolResult": {"toolUseId": m.get("tool_call_id", ""),
                                                    "content": [{"text": text}], "status": "success"}}])
        else:
            _append(turns, "user", _blocks(m.get("content")))
    out: dict[str, Any] = {"messages": turns}
    if system:
        out["system"] = system
    config: dict[str, Any] = {}
    bound = body.get("max_completion_tokens", body.get("max_tokens"))
    if bound is not None:
        config["maxTokens"] = bound
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if config:
        out["inferenceConfig"] = config
    tools = [t["function"] for t in body.get("tools") or ()
             if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if tools:
        out["toolConfig"] = _tool_config(tools, body.get("tool_choice"))
    return out


def completion_from_converse(doc: dict[str, Any], usage: Usage, model: str, request_id: str) -> dict[str, Any]:
    """A Converse response as a `chat.completion`."""
    message = (doc.get("output") or {}).get("message") or {}
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if "text" in block:
            text.append(str(block["text"]))
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append({"id": use.get("toolUseId", ""), "type": "function",
                          "function": {"name": use.get("name", ""),
                                       "arguments": orjson.dumps(use.get("input") or {}).decode()}})
    finish = FINISH_REASONS.get(str(doc.get("stopReason")), "stop")
    return completion(f"chatcmpl-{request_id}", model, "".join(text), calls, finish, usage)


class ConverseChunkWriter:
    """ConverseStream events in, `chat.completion.chunk` frames out."""

    def __init__(self, usage: Usage, client_wants_usage: bool, model: str, request_id: str) -> None:
        self.frames = ChunkFrames(usage, client_wants_usage, model)
        self.frames.id = f"chatcmpl-{request_id}"
        self.tools: dict[int, int] = {}  # contentBlockIndex -> OpenAI tool_calls index
        self.finish: str | None = None  # set by messageStop

    def event(self, kind: str, doc: dict[str, Any]) -> list[bytes]:
        f = self.frames
        if kind == "messageStart":
            return [f.role()]
        if kind == "contentBlockStart":
            use = (doc.get("start") or {}).get("toolUse")
            if not isinstance(use, dict):
                return []
            index = self.tools[int(doc.get("contentBlockIndex", 0))] = len(self.tools)
            return [f.tool_start(index, use.get("toolUseId", ""), use.get("name", ""))]
        if kind == "contentBlockDelta":
            delta = doc.get("delta") or {}
            if "text" in delta:
                return [f.text(str(delta["text"]))]
            block = int(doc.get("contentBlockIndex", 0))
            if isinstance(delta.get("toolUse"), dict) and block in self.tools:
                return [f.tool_arguments(self.tools[block], str(delta["toolUse"].get("input", "")))]
            return []  # reasoningContent is billed, not relayed
        if kind == "messageStop":
            self.finish = FINISH_REASONS.get(str(doc.get("stopReason")), "stop")
            return []
        if kind == "metadata":
            return f.end(self.finish or "stop")
        return []  # contentBlockStop

    def end_without_metadata(self) -> list[bytes]:
        return self.frames.end(self.finish or "stop")
