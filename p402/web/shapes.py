"""The types of a request's fields, checked before anything is decided: each mistake is a 400
that names the field (`messages[2].content[0].text`), never a provider adapter failing on it.

OpenAI's Chat Completions and Anthropic's Messages, the fields every adapter reads or
translates. Fields p402 does not read pass through untouched to a provider of the same
format, which checks them itself; an adapter that translates one format into another
still refuses, with a 400, any field it cannot translate (`RequestUnfit`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ShapeError", "check_chat", "check_messages"]


class ShapeError(Exception):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param, self.message = param, f"{param}: {message}"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _objects(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, dict) for x in v)


def _optional(body: dict[str, Any], name: str, ok: Any, what: str, prefix: str = "") -> None:
    value = body.get(name)
    if value is not None and not ok(value):
        raise ShapeError(prefix + name, f"must be {what}")


def _common(body: dict[str, Any], numbers: tuple[str, ...]) -> None:
    for name in numbers:
        _optional(body, name, _number, "a number")
    _optional(body, "tools", _objects, "a list of tool objects")
    _optional(body, "metadata", lambda v: isinstance(v, dict), "an object")


def check_chat(body: dict[str, Any]) -> None:
    """OpenAI Chat Completions."""
    _common(body, ("temperature", "top_p", "frequency_penalty", "presence_penalty"))
    _optional(body, "stop", lambda v: isinstance(v, str) or _strings(v), "a string or a list of strings")
    _optional(body, "tool_choice", lambda v: isinstance(v, (str, dict)), "a string or an object")
    _optional(body, "response_format", lambda v: isinstance(v, dict), "an object")
    for i, m in enumerate(body["messages"]):
        at = f"messages[{i}]."
        content = m.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                _chat_part(part, f"{at}content[{j}]")
        elif content is not None and not isinstance(content, str):
            raise ShapeError(at + "content", "must be a string, a list of content parts or null")
        calls = m.get("tool_calls")
        if calls is not None:
            if not _objects(calls):
                raise ShapeError(at + "tool_calls", "must be a list of tool call objects")
            for j, call in enumerate(calls):
                _optional(call, "function", lambda v: isinstance(v, dict), "an object", f"{at}tool_calls[{j}].")
        _optional(m, "name", lambda v: isinstance(v, str), "a string", at)
        _optional(m, "tool_call_id", lambda v: isinstance(v, str), "a string", at)


def _chat_part(part: Any, at: str) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise ShapeError(at, "must be a content part object with a type")
    if part["type"] == "text" and not isinstance(part.get("text"), str):
        raise ShapeError(at + ".text", "must be a string")
    if part["type"] == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise ShapeError(at + ".image_url", "must be an object with a url string")


def check_messages(body: dict[str, Any]) -> None:
    """Anthropic Messages."""
    _common(body, ("temperature", "top_p", "top_k"))
    _optional(body, "stop_sequences", _strings, "a list of strings")
    _optional(body, "tool_choice", lambda v: isinstance(v, dict), "an object")
    system = body.get("system")
    if isinstance(system, list):
        for j, block in enumerate(system):
            _block(block, f"system[{j}]")
    elif system is not None and not isinstance(system, str):
        raise ShapeError("system", "must be a string or a list of text blocks")
    for i, m in enumerate(body["messages"]):
        content = m.get("content")
        if isinstance(content, list):
            for j, block in enumerate(content):
                _block(block, f"messages[{i}].content[{j}]")
        elif not isinstance(content, str):
            raise ShapeError(f"messages[{i}].content", "must be a string or a list of content blocks")


def _block(block: Any, at: str) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise ShapeError(at, "must be a content block object with a type")
    kind = block["type"]
    if kind == "text" and not isinstance(block.get("text"), str):
        raise ShapeError(at + ".text", "must be a string")
    if kind in ("image", "document") and not isinstance(block.get("source"), dict):
        raise ShapeError(at + ".source", "must be an object")
    if kind == "tool_use" and not isinstance(block.get("input", {}), dict):
        raise ShapeError(at + ".input", "must be an object")
    if kind == "tool_result":
        inner = block.get("content")
        if isinstance(inner, list):
            for k, part in enumerate(inner):
                _block(part, f"{at}.content[{k}]")
        elif inner is not None and not isinstance(inner, str):
            raise ShapeError(at + ".content", "must be a string or a list of content blocks")
