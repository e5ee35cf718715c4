"""OpenAI wire format: SSE chunks for /v1/chat/completions and /v1/completions, JSON bodies, errors.

Chunk shapes follow what api.openai.com sends: a role-only first chunk for chat, `"usage": null` on every
chunk only when `stream_options.include_usage` is true, then one extra chunk with `"choices": []` and the
usage, then `data: [DONE]`. `finish_reason` rides on the last content chunk.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any, Literal

import orjson

from workbench.simulator.wire import Timing, split_template

__all__ = ["OpenAIEncoder", "error_body", "fingerprint", "models_body"]

_C = "\x01sim-content\x01"
_F = "\x01sim-finish\x01"
_DONE = b"data: [DONE]\n\n"

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", None),
}


def fingerprint(model: str) -> str:
    return "fp_" + hashlib.blake2b(model.encode(), digest_size=5).hexdigest()


def error_body(
    message: str,
    *,
    status: int = 400,
    param: str | None = None,
    code: str | None = None,
    type_: str | None = None,
) -> bytes:
    default_type, default_code = _ERROR_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": type_ or default_type,
                "param": param,
                "code": code or default_code,
            }
        }
    )


def models_body(models: tuple[str, ...], created: int) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": created, "owned_by": "library"} for m in models],
        }
    )


class OpenAIEncoder:
    content_type = "text/event-stream; charset=utf-8"

    def __init__(self, kind: Literal["chat", "completion"], model: str, include_usage: bool) -> None:
        self.kind = kind
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time())
        prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
        self.id = prefix + uuid.uuid4().hex[:29]
        self.fp = fingerprint(model)
        self._cache: dict[str, bytes] = {}
        a, b, c = split_template(self._chunk(_C, _F), _C, _F)
        self._pre = b"data: " + a
        self._mid_null = b + b"null" + c + b"\n\n"
        self._mid_finish = b  # + finish reason json + c
        self._end = c + b"\n\n"

    def _chunk(self, content: Any, finish: Any, *, role: bool = False) -> dict[str, Any]:
        head: dict[str, Any] = {"id": self.id}
        if self.kind == "chat":
            delta: dict[str, Any] = (
                {"role": "assistant", "content": content} if role else {"content": content}
            )
            if content is None:
                delta = {}
            head |= {
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": self.fp,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
        else:
            head |= {
                "object": "text_completion",
                "created": self.created,
                "choices": [{"text": content or "", "index": 0, "logprobs": None, "finish_reason": finish}],
                "model": self.model,
                "system_fingerprint": self.fp,
            }
        if self.include_usage:
            head["usage"] = None
        return head

    @staticmethod
    def _event(obj: Any) -> bytes:
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def preamble(self) -> list[bytes]:
        if self.kind != "chat":
            return []
        return [self._event(self._chunk("", None, role=True))]

    def batch(self, pieces: list[str], finish_reason: str | None) -> bytes:
        cache = self._cache
        out: list[bytes] = []
        append = out.append
        last = len(pieces) - 1 if finish_reason is not None else -1
        pre, mid = self._pre, self._mid_null
        for i, p in enumerate(pieces):
            if i == last:
                append(pre + orjson.dumps(p) + self._mid_finish + orjson.dumps(finish_reason) + self._end)
                continue
            chunk = cache.get(p)
            if chunk is None:
                chunk = cache[p] = pre + orjson.dumps(p) + mid
            append(chunk)
        return b"".join(out)

    def finish_only(self, finish_reason: str) -> bytes:
        return self._event(self._chunk(None if self.kind == "chat" else "", finish_reason))

    def _usage(self, t: Timing) -> dict[str, int]:
        return {
            "prompt_tokens": t.prompt_tokens,
            "completion_tokens": t.completion_tokens,
            "total_tokens": t.prompt_tokens + t.completion_tokens,
        }

    def tail(self, timing: Timing) -> list[bytes]:
        out: list[bytes] = []
        if self.include_usage:
            obj: dict[str, Any] = {
                "id": self.id,
                "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": self.fp,
                "choices": [],
                "usage": self._usage(timing),
            }
            out.append(self._event(obj))
        out.append(_DONE)
        return out

    def error_chunk(self, message: str) -> bytes:
        return b"data: " + error_body(message, status=500) + b"\n\n"

    def malformed(self) -> bytes:
        # A chunk cut in the middle of a string: valid SSE framing, invalid JSON.
        return b'data: {"id":"' + self.id.encode() + b'","object":"chat.compl\n\n'

    def full(self, text: str, timing: Timing) -> bytes:
        if self.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": timing.finish_reason,
            }
            obj: dict[str, Any] = {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "choices": [choice],
                "usage": self._usage(timing),
                "system_fingerprint": self.fp,
            }
        else:
            obj = {
                "id": self.id,
                "object": "text_completion",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {"text": text, "index": 0, "logprobs": None, "finish_reason": timing.finish_reason}
                ],
                "usage": self._usage(timing),
                "system_fingerprint": self.fp,
            }
        return orjson.dumps(obj)
