"""Shared pieces of the two wire formats: the encoder interface, timing figures, JSON templates."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

__all__ = ["StreamEncoder", "Timing", "rfc3339_nano", "split_template"]


@dataclass(frozen=True, slots=True)
class Timing:
    """Server-side figures for the end of a response, in nanoseconds (as Ollama reports them)."""

    total_ns: int
    load_ns: int
    prompt_eval_ns: int
    eval_ns: int
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"


class StreamEncoder(Protocol):
    content_type: str

    def preamble(self) -> list[bytes]:
        """Chunks without text sent before the first content chunk (OpenAI's role-only chunk)."""

    def batch(self, pieces: list[str], finish_reason: str | None) -> bytes:
        """Content chunks; `finish_reason` is set when the last piece is the last of the response."""

    def finish_only(self, finish_reason: str) -> bytes:
        """End-of-content chunk for a response with no text at all (b"" when the protocol has none)."""

    def tail(self, timing: Timing) -> list[bytes]:
        """Chunks after the content: usage, [DONE], Ollama's done object."""

    def error_chunk(self, message: str) -> bytes: ...

    def malformed(self) -> bytes: ...

    def full(self, text: str, timing: Timing) -> bytes:
        """The non-streaming body."""


def split_template(obj: Any, *markers: str) -> list[bytes]:
    """Encode `obj` once and cut it at each quoted marker string: the pieces between the markers.

    Lets the hot path build chunks by concatenation with the exact field order and escaping of a real
    JSON encoder, instead of calling the encoder per chunk.
    """
    raw = orjson.dumps(obj)
    parts: list[bytes] = []
    for m in markers:
        q = orjson.dumps(m)
        before, sep, raw = raw.partition(q)
        if not sep:
            raise ValueError(f"marker {m!r} not in template")
        parts.append(before)
    parts.append(raw)
    return parts


def rfc3339_nano(ns: int | None = None) -> str:
    """UTC time as Go's time.RFC3339Nano prints it (Ollama's `created_at`): trailing zeros trimmed."""
    if ns is None:
        ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac == 0:
        return base + "Z"
    return f"{base}.{frac:09d}".rstrip("0") + "Z"
