"""Per-lane state of a StreamView and its static rendering: plain Python, no widget machinery."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["LaneState", "StaticView", "live_meta", "status_line"]


@dataclass(slots=True)
class LaneState:
    """Python-side state of one lane; `meta()` is what the front end sees."""

    name: str
    seq: int = 0  # stream number on this lane; deltas carry it so stale ones are dropped
    version: int = 0  # bumps on every meta change; the front end keeps the newest
    status: str = "idle"
    parts: list[str] = field(default_factory=list)
    length: int = 0
    sent: int = 0  # characters already delivered to the front end
    pending: list[str] = field(default_factory=list)
    start_ns: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    tokens: int = 0
    usage_tokens: int | None = None
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    e2e_ms: float | None = None
    cache: str = ""
    model: str = ""
    request_id: str = ""
    error: str = ""
    note: str = ""
    finish_reason: str | None = None
    per_token_updates: int = 0
    forced_coalesce: bool = False
    live_ttft: bool = True
    dirty: bool = False
    stream: Any = None  # the client stream being consumed, so cancel() can stop it

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def reset(self) -> None:
        self.seq += 1
        self.status = "streaming"
        self.parts.clear()
        self.pending.clear()
        self.length = self.sent = self.tokens = self.per_token_updates = 0
        self.first_ns = self.last_ns = self.usage_tokens = None
        self.ttft_ms = self.tokens_per_s = self.e2e_ms = None
        self.cache = self.model = self.request_id = self.error = self.note = ""
        self.finish_reason = None
        self.forced_coalesce = False
        self.dirty = False
        self.stream = None

    def live_figures(self) -> None:
        if self.first_ns is not None:
            if self.live_ttft:
                self.ttft_ms = (self.first_ns - self.start_ns) / 1e6
            span = (self.last_ns or self.first_ns) - self.first_ns
            n = self.usage_tokens if self.usage_tokens is not None else self.tokens
            self.tokens_per_s = n / (span / 1e9) if span > 0 and n > 1 else None

    def meta(self, mode: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "seq": self.seq,
            "v": self.version,
            "status": self.status,
            "mode": mode,
            "ttft_ms": _round(self.ttft_ms),
            "tokens_per_s": _round(self.tokens_per_s),
            "tokens": self.usage_tokens if self.usage_tokens is not None else self.tokens,
            "e2e_ms": _round(self.e2e_ms),
            "cache": self.cache,
            "model": self.model,
            "request_id": self.request_id,
            "error": self.error,
            "note": self.note,
            "finish_reason": self.finish_reason,
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


class StaticView:
    """Final texts and metrics as Markdown and HTML: what an exported notebook shows instead of the widget."""

    def __init__(self, markdown: str, html_text: str) -> None:
        self.markdown = markdown
        self.html = html_text

    def _repr_markdown_(self) -> str:
        return self.markdown

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.markdown


def live_meta(ln: LaneState) -> dict[str, Any]:
    # Only the fields that move while streaming, to keep the per-message overhead small.
    tokens = ln.usage_tokens if ln.usage_tokens is not None else ln.tokens
    m: dict[str, Any] = {"v": ln.version, "tokens": tokens}
    if ln.ttft_ms is not None:
        m["ttft_ms"] = _round(ln.ttft_ms)
    if ln.tokens_per_s is not None:
        m["tokens_per_s"] = _round(ln.tokens_per_s)
    if ln.note:
        m["note"] = ln.note
    return m


def status_line(meta: dict[str, Any]) -> str:
    parts = [str(meta.get("status", ""))]
    if meta.get("ttft_ms") is not None:
        parts.append(f"TTFT {meta['ttft_ms']:.0f} ms")
    if meta.get("tokens_per_s") is not None:
        parts.append(f"{meta['tokens_per_s']:.1f} tok/s")
    parts.append(f"{meta.get('tokens', 0)} tokens")
    if meta.get("cache"):
        parts.append(f"cache {meta['cache']}")
    if meta.get("error"):
        parts.append(str(meta["error"]))
    if meta.get("note"):
        parts.append(str(meta["note"]))
    return " · ".join(parts)
