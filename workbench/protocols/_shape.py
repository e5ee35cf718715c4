"""The one shape check both parser modes share, and the size limit of a line or event.

Every chunk a dict path reads (the fast parsers' orjson fallback and the baseline parsers) goes through
`openai_record` / `ollama_parts` here; the fast parsers' msgspec schemas only take what these accept, and
send anything else down that fallback. So both modes give the same verdict on the same bytes, and a wrong
shape is a MalformedStreamError that names the field (`choices[0].delta.content is int 5, expected a
string`), never a TypeError deeper in the client, and never text of the wrong type handed to the user.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from workbench._exceptions import MalformedStreamError
from workbench._types import Usage
from workbench.protocols._common import arguments_text, malformed, snippet

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "OLLAMA_USAGE",
    "OPENAI_USAGE",
    "OpenAIChoice",
    "OpenAIPiece",
    "baseline_object",
    "check_utf8",
    "list_index",
    "loads_like_baseline",
    "ollama_call",
    "ollama_parts",
    "openai_pieces",
    "openai_record",
    "reply_object",
    "too_large",
    "usage_ok",
    "wrong",
]

# Far above any real chunk (a long tool-call argument or a whole non-streamed answer is a few hundred KB),
# low enough that a server that never ends a line cannot eat the machine's memory.
DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024

_HINT_SIZE = (
    "if the server really sends chunks this large, raise the limit: make_parser(..., max_event_bytes=N); "
    "otherwise the server is not speaking the protocol (check the URL and --protocol)"
)

OPENAI = "OpenAI SSE chunk"
OLLAMA = "Ollama NDJSON line"

# (index, id, name, arguments) of one tool-call piece
OpenAIPiece = tuple[int, str | None, str | None, str]
# (index, role, text, reasoning, tool-call pieces, finish_reason) of one choice
OpenAIChoice = tuple[int, Any, str | None, str | None, list[OpenAIPiece], str | None]
_NO_PIECES: list[OpenAIPiece] = []  # shared, never mutated
_NO_CALLS: list[Any] = []  # shared, never mutated


def too_large(
    what: str, size: int, limit: int, data: bytes | bytearray, *, ended: bool = True
) -> MalformedStreamError:
    """The error for a line or event over the size limit: its size, the limit, and what to do."""
    size_text = f"{size:,} bytes" if ended else f"more than {size:,} bytes so far, with no end in sight"
    return MalformedStreamError(
        f"the server sent an {what} of {size_text}, over the limit of {limit:,} bytes "
        f"(max_event_bytes); it starts {snippet(data)}",
        hint=_HINT_SIZE,
    )


def _describe(value: Any) -> str:
    name = {dict: "object", list: "list", str: "str", bool: "bool", type(None): "null"}.get(type(value))
    if name is None:
        name = type(value).__name__
    text = repr(value)
    return f"{name} {text if len(text) <= 40 else text[:40] + '...'}"


def wrong(
    what: str, path: str, value: Any, expected: str, payload: bytes | bytearray | str
) -> MalformedStreamError:
    """`malformed <what>: <path> is <type> <value>, expected <expected>; received <payload>`."""
    return MalformedStreamError(
        f"malformed {what}: {path} is {_describe(value)}, expected {expected}; received {snippet(payload)}"
    )


def check_utf8(text: str, what: str) -> None:
    """A baseline line (decoded with surrogateescape) must have been valid UTF-8, as the fast parsers need."""
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raw = text.encode("utf-8", "surrogateescape")
            at = len(text[: exc.start].encode("utf-8", "surrogateescape"))
            raise MalformedStreamError(
                f"malformed {what}: invalid UTF-8 at byte {at}; received {snippet(raw)}"
            ) from None


def loads_like_baseline(data: bytes | bytearray, what: str, orjson_error: Exception) -> Any:
    """What the baseline's json.loads makes of data orjson refused (a number too large for a float,
    NaN, a lone surrogate escape), so both modes decide alike; MalformedStreamError if it refuses too."""
    try:
        return json.loads(bytes(data).decode())
    except ValueError:  # UnicodeDecodeError included
        raise MalformedStreamError(f"malformed {what}: {orjson_error}; received {snippet(data)}") from None


def baseline_object(text: str, what: str) -> dict[str, Any]:
    """A line or payload read as a typical client reads it (UTF-8 checked, json.loads): a JSON object."""
    if not text.isascii():
        check_utf8(text, what)
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise malformed(what, text, exc) from None
    if not isinstance(obj, dict):
        raise malformed(f"{what} (not an object)", text)
    return obj


def reply_object(body: bytes, what: str) -> dict[str, Any]:
    """A whole non-streaming reply body, which must be a JSON object."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise malformed(what, body, exc) from None
    if not isinstance(obj, dict):
        raise malformed(f"{what} (not an object)", body)
    return obj


def _count_ok(value: Any) -> bool:
    return value is None or type(value) is int


def usage_ok(usage: Mapping[str, Any], keys: tuple[str, str]) -> bool:
    """The token counts a Usage is built from are integers (or absent)."""
    return _count_ok(usage.get(keys[0])) and _count_ok(usage.get(keys[1]))


def _check_usage(usage: Any, path: str, keys: tuple[str, str], what: str, payload: bytes | str) -> None:
    if type(usage) is not dict:
        raise wrong(what, path, usage, "an object", payload)
    for key in keys:
        if not _count_ok(usage.get(key)):
            raise wrong(what, f"{path}.{key}", usage[key], "an integer", payload)


def _text(value: Any, path: str, what: str, payload: bytes | bytearray | str) -> str | None:
    if value is None or type(value) is str:
        return value
    raise wrong(what, path, value, "a string", payload)


def list_index(value: Any, position: int) -> int:
    """A choice's or tool call's `index`; its position in the list when the server left it out."""
    return value if type(value) is int and value >= 0 else position


# ---- OpenAI-compatible chunks ----

OPENAI_USAGE = ("prompt_tokens", "completion_tokens")


def openai_pieces(calls: Any, path: str, payload: bytes | str, what: str = OPENAI) -> list[OpenAIPiece]:
    """`delta.tool_calls` (a list, or TGI 2.x's single object) as (index, id, name, arguments) pieces."""
    if calls is None:
        return []
    if type(calls) is dict:
        calls, one = [calls], True
    elif type(calls) is list:
        one = False
    else:
        raise wrong(what, path, calls, "a list", payload)
    out: list[OpenAIPiece] = []
    for j, call in enumerate(calls):
        at = path if one else f"{path}[{j}]"
        if type(call) is not dict:
            raise wrong(what, at, call, "an object", payload)
        fn = call.get("function")
        if fn is None:
            fn = {}
        elif type(fn) is not dict:
            raise wrong(what, f"{at}.function", fn, "an object", payload)
        cid = call.get("id")
        out.append(
            (
                list_index(call.get("index"), j),
                None if cid is None else str(cid),
                _text(fn.get("name"), f"{at}.function.name", what, payload),
                arguments_text(fn.get("arguments")),
            )
        )
    return out


def openai_record(obj: dict[str, Any], payload: bytes | str) -> dict[str, Any]:
    """The per-chunk record a typical client builds (cf. openai-python's ChatCompletionChunk), checked.

    Each choice becomes (index, role, text, reasoning, tool-call pieces, finish_reason). `index`, `id`,
    `model` and `timings` (llama.cpp's own figures) of an odd type are let pass: nothing the user reads
    comes from them. An `error` is the caller's to handle before this.
    """
    raw = obj.get("choices")
    choices: list[OpenAIChoice] = []
    if raw is not None and type(raw) is not list:
        raise wrong(OPENAI, "choices", raw, "a list", payload)
    for pos, ch in enumerate(raw or ()):
        if type(ch) is not dict:
            raise wrong(OPENAI, f"choices[{pos}]", ch, "an object", payload)
        # the type tests are inline (not a call per field): this runs once per chunk in the baseline
        delta = ch.get("delta")
        if delta is None:
            role, reasoning, pieces = None, None, _NO_PIECES
            text = ch.get("text")
            if text is not None and type(text) is not str:
                raise wrong(OPENAI, f"choices[{pos}].text", text, "a string", payload)
        elif type(delta) is dict:
            role, text = delta.get("role"), delta.get("content")
            if text is not None and type(text) is not str:
                raise wrong(OPENAI, f"choices[{pos}].delta.content", text, "a string", payload)
            rc, r = delta.get("reasoning_content"), delta.get("reasoning")
            if rc is not None or r is not None:
                _text(rc, f"choices[{pos}].delta.reasoning_content", OPENAI, payload)
                _text(r, f"choices[{pos}].delta.reasoning", OPENAI, payload)
            reasoning = rc or r
            calls = delta.get("tool_calls")
            if calls is None:
                pieces = _NO_PIECES
            else:
                pieces = openai_pieces(calls, f"choices[{pos}].delta.tool_calls", payload)
        else:
            raise wrong(OPENAI, f"choices[{pos}].delta", delta, "an object", payload)
        finish = ch.get("finish_reason")
        if finish is not None and type(finish) is not str:
            raise wrong(OPENAI, f"choices[{pos}].finish_reason", finish, "a string", payload)
        choices.append((list_index(ch.get("index"), pos), role, text, reasoning, pieces, finish))
    usage, timings = obj.get("usage"), obj.get("timings")
    if usage is not None:
        _check_usage(usage, "usage", OPENAI_USAGE, OPENAI, payload)
    return {
        "id": obj.get("id"),
        "model": obj.get("model"),
        "choices": choices,
        "usage": Usage(usage.get("prompt_tokens"), usage.get("completion_tokens")) if usage else None,
        "timings": timings if timings and type(timings) is dict else None,
    }


# ---- Ollama NDJSON lines ----

OLLAMA_USAGE = ("prompt_eval_count", "eval_count")


def ollama_parts(
    obj: Mapping[str, Any], line: bytes | bytearray | str, what: str = OLLAMA
) -> tuple[str | None, str | None, list[Any]]:
    """(text, thinking, tool calls) of a line: from `message` on /api/chat, the top level on /api/generate.

    A `done: true` line's token counts must be integers too (they become the stream's Usage).
    """
    msg = obj.get("message")
    if msg is not None and type(msg) is not dict:
        raise wrong(what, "message", msg, "an object", line)
    if msg is not None:
        text, thinking, calls = msg.get("content"), msg.get("thinking"), msg.get("tool_calls")
        where = "message."
    else:
        text, thinking, calls, where = obj.get("response"), obj.get("thinking"), None, ""
    # inline tests, a call only on the rare odd value: this runs once per line in the baseline
    if text is not None and type(text) is not str:
        raise wrong(what, f"{where}{'content' if where else 'response'}", text, "a string", line)
    if thinking is not None and type(thinking) is not str:
        raise wrong(what, f"{where}thinking", thinking, "a string", line)
    if obj.get("done"):
        for key in OLLAMA_USAGE:
            if not _count_ok(obj.get(key)):
                raise wrong(what, key, obj[key], "an integer", line)
    if calls is None:
        return text, thinking, _NO_CALLS
    if type(calls) is not list:
        raise wrong(what, "message.tool_calls", calls, "a list", line)
    for j, call in enumerate(calls):
        if type(call) is not dict:
            raise wrong(what, f"message.tool_calls[{j}]", call, "an object", line)
    return text, thinking, calls


def ollama_call(
    call: Mapping[str, Any], j: int, line: bytes | bytearray | str, what: str = OLLAMA
) -> tuple[str | None, str | None, str]:
    """(id, name, arguments as JSON text) of one whole Ollama tool call (the j-th of its line)."""
    fn = call.get("function")
    at = f"message.tool_calls[{j}].function"
    if fn is None:
        fn = {}
    elif type(fn) is not dict:
        raise wrong(what, at, fn, "an object", line)
    name, cid = _text(fn.get("name"), f"{at}.name", what, line), call.get("id")
    return (None if cid is None else str(cid)) or None, name or None, arguments_text(fn.get("arguments"))
