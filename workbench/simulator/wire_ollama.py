"""Ollama wire format: NDJSON lines for /api/chat and /api/generate, JSON bodies, errors.

Each line carries `model` and `created_at` (RFC3339 with nanoseconds); chat lines carry
`message: {role, content}`, generate lines `response`. The last line is `done: true` with `done_reason` and
durations in nanoseconds. Chunks written in one batch share one `created_at`, like they share one emit stamp.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import orjson

from workbench.simulator.wire import Timing, rfc3339_nano, split_template

__all__ = ["OllamaEncoder", "error_body", "tags_body"]

_T = "\x01sim-time\x01"
_C = "\x01sim-content\x01"


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def tags_body(models: tuple[str, ...], modified_at: str) -> bytes:
    entries = []
    for m in models:
        digest = hashlib.sha256(m.encode()).hexdigest()
        entries.append(
            {
                "name": m,
                "model": m,
                "modified_at": modified_at,
                "size": 1_000_000 + int(digest[:6], 16),
                "digest": digest,
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "sim",
                    "families": ["sim"],
                    "parameter_size": "1B" if "small" in m else "8B",
                    "quantization_level": "Q4_0",
                },
            }
        )
    return orjson.dumps({"models": entries})


class OllamaEncoder:
    content_type = "application/x-ndjson"

    def __init__(self, kind: Literal["chat", "completion"], model: str) -> None:
        self.kind = kind
        self.model = model
        self._cache: dict[str, bytes] = {}
        a, b, c = split_template(self._line(_T, _C), _T, _C)
        self._a, self._b, self._c = a, b, c + b"\n"

    def _line(self, ts: str, content: str) -> dict[str, Any]:
        if self.kind == "chat":
            return {
                "model": self.model,
                "created_at": ts,
                "message": {"role": "assistant", "content": content},
                "done": False,
            }
        return {"model": self.model, "created_at": ts, "response": content, "done": False}

    def preamble(self) -> list[bytes]:
        return []

    def batch(self, pieces: list[str], finish_reason: str | None) -> bytes:
        # The template cut removed the quotes around the time marker.
        head = self._a + b'"' + rfc3339_nano().encode() + b'"' + self._b
        cache, tail = self._cache, self._c
        out: list[bytes] = []
        append = out.append
        for p in pieces:
            rest = cache.get(p)
            if rest is None:
                rest = cache[p] = orjson.dumps(p) + tail
            append(head)
            append(rest)
        return b"".join(out)

    def finish_only(self, finish_reason: str) -> bytes:
        return b""

    def _done(self, text: str, t: Timing) -> dict[str, Any]:
        stats = {
            "total_duration": t.total_ns,
            "load_duration": t.load_ns,
            "prompt_eval_count": t.prompt_tokens,
            "prompt_eval_duration": t.prompt_eval_ns,
            "eval_count": t.completion_tokens,
            "eval_duration": t.eval_ns,
        }
        if self.kind == "chat":
            return {
                "model": self.model,
                "created_at": rfc3339_nano(),
                "message": {"role": "assistant", "content": text},
                "done_reason": t.finish_reason,
                "done": True,
                **stats,
            }
        return {
            "model": self.model,
            "created_at": rfc3339_nano(),
            "response": text,
            "done": True,
            "done_reason": t.finish_reason,
            **stats,
        }

    def tail(self, timing: Timing) -> list[bytes]:
        return [orjson.dumps(self._done("", timing)) + b"\n"]

    def error_chunk(self, message: str) -> bytes:
        return error_body(message) + b"\n"

    def malformed(self) -> bytes:
        return b'{"model":"' + self.model.encode() + b'","created_at":"2024-\n'

    def full(self, text: str, timing: Timing) -> bytes:
        return orjson.dumps(self._done(text, timing))
