"""The types of a request's fields, checked before anything is decided: each mistake is a 400
that names the field (`messages[2].content[0].text`), never a provider adapter failing on it.

OpenAI's Chat Completions and Anthropic's Messages, the fields every adapter reads or
translates. Fields p402 does not read pass through untouched to a provider of the same
format, which checks them itself; an adapter that translates one format into another
still refuses, with a 400, any field it cannot translate (`RequestUnfit`).
"""

from __future__ import annotations

from typing import Any

from p402.core.policy import MAX_OUTPUT_TOKENS

__all__ = ["ShapeError", "check_chat", "check_messages", "MAX_CHOICES"]

MAX_CHOICES = 128  # OpenAI's own limit on `n`


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


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _count(low: int, high: int) -> tuple[Any, str]:
    """An integer in JSON (not a bool, which Python counts as one) from `low` to `high`."""
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high,
            f"an integer from {low} to {high}")


_NUMBER = (_number, "a number")
_TOOLS = (_objects, "a list of tool objects")
_OBJECT = (_is_dict, "an object")
# Top-level fields by format: (check, what it must be). Only the fields a body has are looked at.
# Both formats (a messages body with `n` or `max_completion_tokens` is checked the same way).
_BOTH_FIELDS = {
    "max_tokens": _count(1, MAX_OUTPUT_TOKENS), "max_completion_tokens": _count(1, MAX_OUTPUT_TOKENS),
    "n": _count(1, MAX_CHOICES), "stream": (lambda v: isinstance(v, bool), "true or false"),
    "stream_options": (_is_dict, 'an object such as {"include_usage": true}'),
}
_CHAT_FIELDS = {**_BOTH_FIELDS,
    "temperature": _NUMBER, "top_p": _NUMBER, "frequency_penalty": _NUMBER, "presence_penalty": _NUMBER,
    "tools": _TOOLS, "metadata": _OBJECT, "response_format": _OBJECT,
    "stop": (lambda v: isinstance(v, str) or _strings(v), "a string or a list of strings"),
    "tool_choice": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
}
_MESSAGES_FIELDS = {**_BOTH_FIELDS,
    "temperature": _NUMBER, "top_p": _NUMBER, "top_k": _NUMBER, "tools": _TOOLS, "metadata": _OBJECT,
    "stop_sequences": (_strings, "a list of strings"), "tool_choice": _OBJECT,
}


def _fields(body: dict[str, Any], checks: dict[str, tuple[Any, str]]) -> None:
    for name in body:  # in the body's order: the first wrong field is the one named, every time
        check = checks.get(name)
        if check is not None:
            _optional(body, name, check[0], check[1])


def check_chat(body: dict[str, Any]) -> None:
    """OpenAI Chat Completions."""
    _fields(body, _CHAT_FIELDS)
    for i, m in enumerate(body["messages"]):
        content = m.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                _chat_part(part, f"messages[{i}].content[{j}]")
        elif content is not None and not isinstance(content, str):
            raise ShapeError(f"messages[{i}].content", "must be a string, a list of content parts or null")
        if len(m) > (2 if "content" in m else 1):  # more than role and content: the rarer fields
            _chat_message_extras(m, f"messages[{i}].")


def _chat_message_extras(m: dict[str, Any], at: str) -> None:
    calls = m.get("tool_calls")
    if calls is not None:
        if not _objects(calls):
            raise ShapeError(at + "tool_calls", "must be a list of tool call objects")
        for j, call in enumerate(calls):
            _optional(call, "function", _is_dict, "an object", f"{at}tool_calls[{j}].")
    _optional(m, "name", _is_str, "a string", at)
    _optional(m, "tool_call_id", _is_str, "a string", at)


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
    _fields(body, _MESSAGES_FIELDS)
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
