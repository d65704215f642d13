"""Serve an OpenAI Chat Completions client from Gemini's `generateContent`: the translation.

Request: system messages become `systemInstruction`; `assistant` turns become
`model` turns; image parts become `inlineData` (data URLs) or `fileData`;
assistant tool calls become `functionCall` parts and `tool` messages
`functionResponse` parts (Gemini matches them by function name, so the name is
looked up from the call id); consecutive turns of one role are merged;
`max_tokens`, `temperature`, `top_p`, `stop` and JSON mode go to
`generationConfig`; tools to `functionDeclarations`; `tool_choice` to
`functionCallingConfig`.

Answer: the first candidate becomes the choice; thought parts are not relayed
(they are billed, as `thoughtsTokenCount`). Usage: `promptTokenCount` includes
`cachedContentTokenCount`, so the cached part is taken out of the input;
output is `candidatesTokenCount + thoughtsTokenCount`.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import orjson

from p402.pipeline.ports import Usage
from p402.providers.chat_format import ChunkFrames, completion, translation

__all__ = ["gemini_request_from_chat", "completion_from_gemini", "GeminiChunkWriter", "read_gemini_usage",
           "FINISH_REASONS"]

# Gemini finishReason -> OpenAI finish_reason (safety-like stops are content filters).
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter",
                  "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
                  "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
                  "IMAGE_SAFETY": "content_filter"}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def read_gemini_usage(meta: Mapping[str, Any], usage: Usage, *, final: bool = True) -> None:
    """Fill `usage` from a `usageMetadata` object."""
    cached = _int(meta.get("cachedContentTokenCount"))
    # Tool-use prompts (search grounding, code execution) are billed as input too.
    prompt = _int(meta.get("promptTokenCount")) + _int(meta.get("toolUsePromptTokenCount"))
    usage.cache_read_tokens = cached
    usage.input_tokens = max(prompt - cached, 0)
    usage.output_tokens = _int(meta.get("candidatesTokenCount")) + _int(meta.get("thoughtsTokenCount"))
    if final:
        usage.reported = True


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content or ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and part.get("text"):
            parts.append({"text": part["text"]})
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url", "") if isinstance(image, dict) else str(image or "")
            if url.startswith("data:") and ";base64," in url:
                mime, data = url[5:].split(";base64,", 1)
                parts.append({"inlineData": {"mimeType": mime, "data": data}})
            else:
                parts.append({"fileData": {"mimeType": "image/jpeg", "fileUri": url}})
    return parts


def _response_object(content: Any) -> dict[str, Any]:
    text = content if isinstance(content, str) else "".join(
        p.get("text", "") for p in content or () if isinstance(p, dict))
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    # Gemini wants an object; a tool's plain-text answer is wrapped.
    return value if isinstance(value, dict) else {"content": text}


def _append(turns: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["parts"].extend(parts)  # parallel function responses belong in one turn
    else:
        turns.append({"role": role, "parts": parts})


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name", "")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    mode = {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(str(choice))
    return {"functionCallingConfig": {"mode": mode}} if mode else None


@translation
def gemini_request_from_chat(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI Chat Completions request as a Gemini `GenerateContentRequest`."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name
    for m in body.get("messages") or ():
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(p["text"] for p in _parts(m.get("content")) if "text" in p)
        elif role == "assistant":
            parts = _parts(m.get("content"))
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                names[str(call.get("id"))] = fn.get("name", "")
                try:
                    args = orjson.loads(fn.get("arguments") or "{}")
                except orjson.JSONDecodeError:
                    args = {}
                parts.append({"functionCall": {"name": fn.get("name", ""), "args": args}})
            _append(turns, "model", parts)
        elif role == "tool":
            call_id = str(m.get("tool_call_id", ""))
            _append(turns, "user", [{"functionResponse": {"name": names.get(call_id, call_id),
                                                          "response": _response_object(m.get("content"))}}])
        else:
            _append(turns, "user", _parts(m.get("content")))
    out: dict[str, Any] = {"contents": turns}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config: dict[str, Any] = {}
    bound = body.get("max_completion_tokens", body.get("max_tokens"))
    if bound is not None:
        config["maxOutputTokens"] = bound
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed")):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if config:
        out["generationConfig"] = config
    functions = [t["function"] for t in body.get("tools") or ()
                 if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if functions:
        out["tools"] = [{"functionDeclarations": [
            {"name": f.get("name", ""), "description": f.get("description", ""),
             **({"parameters": f["parameters"]} if f.get("parameters") else {})} for f in functions]}]
        tool_config = _tool_config(body.get("tool_choice")) if body.get("tool_choice") else None
        if tool_config:
            out["toolConfig"] = tool_config
    return out


def _candidate_parts(doc: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    candidates = doc.get("candidates") or []
    if not candidates:
        return [], "SAFETY" if (doc.get("promptFeedback") or {}).get("blockReason") else None
    first = candidates[0]
    return list((first.get("content") or {}).get("parts") or []), first.get("finishReason")


def _finish(reason: str | None, has_calls: bool) -> str:
    if has_calls and reason in (None, "STOP"):
        return "tool_calls"
    return FINISH_REASONS.get(str(reason), "stop")


def completion_from_gemini(doc: dict[str, Any], usage: Usage, model: str) -> dict[str, Any]:
    """A `GenerateContentResponse` as a `chat.completion`."""
    parts, reason = _candidate_parts(doc)
    text = "".join(p.get("text", "") for p in parts if "text" in p and not p.get("thought"))
    calls = [{"id": p["functionCall"].get("id") or f"call_{i}", "type": "function",
              "function": {"name": p["functionCall"].get("name", ""),
                           "arguments": orjson.dumps(p["functionCall"].get("args") or {}).decode()}}
             for i, p in enumerate(parts) if "functionCall" in p]
    response_id = "chatcmpl-" + str(doc.get("responseId") or time.time_ns())
    return completion(response_id, str(doc.get("modelVersion") or model), text, calls,
                      _finish(reason, bool(calls)), usage)


class GeminiChunkWriter:
    """Gemini stream chunks in, `chat.completion.chunk` frames out."""

    def __init__(self, usage: Usage, client_wants_usage: bool, model: str) -> None:
        self.frames = ChunkFrames(usage, client_wants_usage, model)
        self.started = False
        self.calls = 0
        self.reason: str | None = None

    def chunk(self, doc: dict[str, Any]) -> list[bytes]:
        f = self.frames
        out: list[bytes] = []
        if not self.started:
            self.started = True
            if doc.get("responseId"):
                f.id = f"chatcmpl-{doc['responseId']}"
            f.model = doc.get("modelVersion") or f.model
            out.append(f.role())
        parts, reason = _candidate_parts(doc)
        for part in parts:
            if "text" in part and not part.get("thought") and part["text"]:
                out.append(f.text(part["text"]))
            elif "functionCall" in part:
                fn = part["functionCall"]
                out.append(f.tool_start(self.calls, fn.get("id") or f"call_{self.calls}", fn.get("name", ""),
                                        orjson.dumps(fn.get("args") or {}).decode()))
                self.calls += 1
        if reason:
            self.reason = reason
        return out

    def finish(self) -> list[bytes]:
        return self.frames.end(_finish(self.reason, self.calls > 0))
