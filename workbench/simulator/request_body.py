"""Reading and validating a generation request's body: size limit, JSON, the prompt text.

Error messages follow each server's own wording (Ollama's Go errors, the OpenAI API's), so clients see in the
simulator what they would see from the real thing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

import orjson

__all__ = ["BadRequest", "parse_json", "prompt_text", "read_body"]

Proto = Literal["ollama", "openai"]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

_MAX_BODY = 32 * 1024 * 1024
_OPENAI_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)


class BadRequest(Exception):
    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


async def read_body(receive: Receive) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            raise BadRequest(413, "request body too large")
        parts.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(parts)


def parse_json(proto: Proto, body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise BadRequest(400, "missing request body" if proto == "ollama" else _OPENAI_BAD_JSON)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if proto == "ollama":
            first = body.lstrip()[:1].decode("latin-1")
            msg = (
                f"invalid character '{first}' looking for beginning of value"
                if first not in '{["'
                else str(exc)
            )
            raise BadRequest(400, msg) from None
        raise BadRequest(400, _OPENAI_BAD_JSON) from None
    if not isinstance(data, dict):
        raise BadRequest(400, "request body must be a JSON object" if proto == "ollama" else _OPENAI_BAD_JSON)
    return data


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return None


def prompt_text(proto: Proto, kind: Literal["chat", "completion"], data: dict[str, Any]) -> str:
    if kind == "chat":
        msgs = data.get("messages")
        if not isinstance(msgs, list) or not msgs:
            if proto == "ollama":
                raise BadRequest(400, "messages is required")
            raise BadRequest(
                400,
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        texts: list[str] = []
        for i, m in enumerate(msgs):
            text = _content_text(m.get("content")) if isinstance(m, dict) else None
            if text is None or not isinstance(m.get("role"), str):
                msg = f"messages[{i}] must be an object with string role and content"
                raise BadRequest(400, msg, param=f"messages.[{i}]")
            texts.append(text)
        return "\n".join(texts)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and proto == "openai" and all(isinstance(p, str) for p in prompt) and prompt:
        prompt = "\n".join(prompt)
    if not isinstance(prompt, str):
        if proto == "ollama":
            raise BadRequest(400, "prompt is required")
        raise BadRequest(
            400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
        )
    if proto == "ollama" and isinstance(data.get("system"), str):
        prompt = data["system"] + "\n" + prompt
    return prompt
