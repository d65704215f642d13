"""Serve an Anthropic Messages client (`/v1/messages`) through any adapter that speaks OpenAI chat.

The request is translated to Chat Completions (system prompt, turns, images,
tools and tool results, stop sequences, tool choice), the adapter's chat path
does the call and the usage accounting, and its answer is translated back: a
`chat.completion` becomes a `message`, a chunk stream becomes Anthropic's
`message_start` / `content_block_*` / `message_delta` / `message_stop` events.
The usage object is shared, so the final `message_delta` carries the usage the
chat path settled on.
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Awaitable, Callable

import orjson

from p402.pipeline.ports import Call, Reply, Usage, aclose
from p402.providers.chat_format import parse_arguments, text_of, translation
from p402.providers.error_bodies import relay_error
from p402.providers.relay import MappedStream
from p402.providers.sse import SSEDecoder, event_frame

__all__ = ["send_messages_over_chat", "chat_request_from_messages", "message_from_completion", "STOP_REASONS"]

# OpenAI finish_reason -> Anthropic stop_reason.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}


def _image_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = str(source.get("url", ""))
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _user_turn(content: list[Any], out: list[dict[str, Any]]) -> None:
    """One Anthropic user turn: tool results become `tool` messages (they must follow the
    assistant's tool calls directly), the rest one user message."""
    parts: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "tool_result":
            text = text_of(block.get("content"))
            if block.get("is_error"):
                text = f"[tool error] {text}"
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": text})
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            image = _image_part(block)
            if image is not None:
                parts.append(image)
    if parts and all(p["type"] == "text" for p in parts):
        out.append({"role": "user", "content": "".join(p["text"] for p in parts)})
    elif parts:
        out.append({"role": "user", "content": parts})


def _assistant_turn(content: list[Any], out: list[dict[str, Any]]) -> None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id", ""), "type": "function",
                          "function": {"name": block.get("name", ""),
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        # thinking blocks are the provider's own; another provider cannot take them back
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    out.append(message)


def _tool_choice(choice: Any) -> Any:
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    return {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))


@translation
def chat_request_from_messages(body: dict[str, Any], bound_field: str = "max_tokens") -> dict[str, Any]:
    """An Anthropic Messages request as an OpenAI Chat Completions request."""
    messages: list[dict[str, Any]] = []
    system = text_of(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for turn in body.get("messages") or ():
        if not isinstance(turn, dict):
            continue
        content = turn.get("content")
        if isinstance(content, str):
            messages.append({"role": turn.get("role", "user"), "content": content})
        elif turn.get("role") == "assistant":
            _assistant_turn(content or [], messages)
        else:
            _user_turn(content or [], messages)
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_tokens") is not None:
        out[bound_field] = body["max_tokens"]
    for key in ("temperature", "top_p", "stream"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    tools = [{"type": "function", "function": {"name": t.get("name", ""), "description": t.get("description", ""),
                                               "parameters": t.get("input_schema") or {"type": "object"}}}
             for t in body.get("tools") or () if isinstance(t, dict) and "input_schema" in t]
    if tools:
        out["tools"] = tools
        choice = body.get("tool_choice")
        mapped = _tool_choice(choice)
        if mapped is not None:
            out["tool_choice"] = mapped
        if isinstance(choice, dict) and choice.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        out["user"] = str(user)
    return out


def _usage_view(usage: Usage) -> dict[str, int]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cache_read_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens}


def _message_id(chat_id: Any) -> str:
    text = str(chat_id or "")
    return "msg_" + (text.removeprefix("chatcmpl-") or f"p402{time.time_ns()}")


def message_from_completion(doc: dict[str, Any], usage: Usage, model: str) -> dict[str, Any]:
    """A `chat.completion` as an Anthropic `message`."""
    choices = doc.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or f"toolu_{len(content)}",
                        "name": fn.get("name", ""), "input": parse_arguments(fn.get("arguments"))})
    return {"id": _message_id(doc.get("id")), "type": "message", "role": "assistant",
            "model": doc.get("model") or model, "content": content,
            "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
            "stop_sequence": None, "usage": _usage_view(usage)}


class _EventWriter:
    """Turns OpenAI chat chunks into Anthropic stream events, block by block."""

    def __init__(self, usage: Usage, model: str) -> None:
        self.usage, self.model = usage, model
        self.started = False
        self.block = -1  # index of the open content block, -1 when none
        self.block_kind = ""
        self.tools: dict[int, int] = {}  # OpenAI tool_calls index -> our block index
        self.stop_reason = "end_turn"

    def chunk(self, doc: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if not self.started:
            self.started = True
            out.append(event_frame("message_start", {"type": "message_start", "message": {
                "id": _message_id(doc.get("id")), "type": "message", "role": "assistant",
                "model": doc.get("model") or self.model, "content": [], "stop_reason": None,
                "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}}))
        for choice in doc.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self.block_kind != "text":
                    out += self._open({"type": "text", "text": ""}, "text")
                out.append(self._delta({"type": "text_delta", "text": delta["content"]}))
            for call in delta.get("tool_calls") or ():
                out += self._tool(call)
            if choice.get("finish_reason"):
                self.stop_reason = STOP_REASONS.get(str(choice["finish_reason"]), "end_turn")
        return out

    def _tool(self, call: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        fn = call.get("function") or {}
        index = int(call.get("index", 0))
        if index not in self.tools:
            out += self._open({"type": "tool_use", "id": call.get("id") or f"toolu_{index}",
                               "name": fn.get("name", ""), "input": {}}, "tool")
            self.tools[index] = self.block
        if fn.get("arguments"):
            out.append(self._delta({"type": "input_json_delta", "partial_json": fn["arguments"]},
                                   self.tools[index]))
        return out

    def _open(self, block: dict[str, Any], kind: str) -> list[bytes]:
        out = self._close()
        self.block += 1
        self.block_kind = kind
        out.append(event_frame("content_block_start", {"type": "content_block_start", "index": self.block,
                                                       "content_block": block}))
        return out

    def _close(self) -> list[bytes]:
        if not self.block_kind:
            return []
        self.block_kind = ""
        return [event_frame("content_block_stop", {"type": "content_block_stop", "index": self.block})]

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> bytes:
        return event_frame("content_block_delta", {"type": "content_block_delta",
                                                   "index": self.block if index is None else index, "delta": delta})

    def finish(self) -> list[bytes]:
        out = self.chunk({}) if not self.started else []
        out += self._close()
        out.append(event_frame("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": self.stop_reason, "stop_sequence": None}, "usage": _usage_view(self.usage)}))
        out.append(event_frame("message_stop", {"type": "message_stop"}))
        return out


async def _translate(inner: AsyncIterator[bytes], usage: Usage, model: str) -> AsyncIterator[bytes]:
    writer = _EventWriter(usage, model)
    decoder = SSEDecoder()
    try:
        async for chunk in inner:
            for event in decoder.feed(chunk):
                if event.data.strip() == "[DONE]":
                    continue  # the inner stream ends right after; usage is final then
                doc = orjson.loads(event.data)
                if isinstance(doc, dict):
                    for frame in writer.chunk(doc):
                        yield frame
        for frame in writer.finish():
            yield frame
    finally:
        await aclose(inner)


async def send_messages_over_chat(send_chat: Callable[[Call], Awaitable[Reply]], call: Call,
                                  bound_field: str = "max_tokens") -> Reply:
    """Serve a Messages `call` with `send_chat`, translating both ways."""
    body = chat_request_from_messages(call.body, bound_field)
    chat = Call(route="chat", body=body, stream=call.stream, upstream_model=call.upstream_model,
                client_wants_usage=False, timeout_s=call.timeout_s, input_tokens_bound=call.input_tokens_bound)
    reply = await send_chat(chat)
    model = str(call.body.get("model") or call.upstream_model)
    if reply.chunks is not None:
        inner = reply.chunks
        stream = MappedStream(inner, lambda it: _translate(it, reply.usage, model))
        return Reply(reply.status, content_type="text/event-stream", chunks=stream, usage=reply.usage,
                     headers=reply.headers)
    raw = reply.body or b"{}"
    if reply.status >= 400:
        return Reply(reply.status, body=relay_error("messages", reply.status, raw, "openai"), usage=reply.usage)
    doc = orjson.loads(raw)
    return Reply(reply.status, body=orjson.dumps(message_from_completion(doc, reply.usage, model)),
                 usage=reply.usage, headers=reply.headers)
