"""Per-lane state of a stream view and its static rendering: plain Python, no widget machinery."""

from __future__ import annotations

import html
import zlib
from dataclasses import dataclass, field
from typing import Any

from workbench._types import StreamResult

__all__ = [
    "LaneState",
    "PendingEnd",
    "StaticView",
    "fingerprint",
    "live_meta",
    "render_static",
    "replace_meta",
    "status_line",
    "utf16_len",
]


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: what JavaScript's `String.length` counts (an emoji is 2, not 1)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def fingerprint(text: str) -> tuple[int, int]:
    """(UTF-16 length, CRC-32 of the UTF-16LE code units) of a text.

    The front end checks its delta-built text against this before it stores it as the final value.
    UTF-16 because that is what a JS string is (no encoder needed there, lone surrogates included);
    CRC-32 because zlib computes it in C here, so a 100,000-character text costs well under a millisecond.
    """
    data = text.encode("utf-16-le", "surrogatepass")
    return len(data) // 2, zlib.crc32(data)


@dataclass(slots=True)
class LaneState:
    """Python-side state of one lane; `meta()` is what the front end sees."""

    name: str
    seq: int = 0  # stream number on this lane; deltas carry it so stale ones are dropped
    version: int = 0  # bumps on every meta change; the front end keeps the newest
    status: str = "idle"
    parts: list[str] = field(default_factory=list)
    length: int = 0
    sent: int = 0  # characters (code points) already delivered to the front end
    sent16: int = 0  # the same in UTF-16 code units: the offsets the front end compares against
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
        self.length = self.sent = self.sent16 = self.tokens = self.per_token_updates = 0
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

    def take_result(self, result: StreamResult) -> None:
        # The result's text is authoritative (a cache replay may not have streamed through push()).
        if result.text != self.text:
            if not result.text.startswith(self.text[: self.sent]):
                self.sent = self.sent16 = 0  # the front end's text is not a prefix: the end replaces it all
            self.parts[:] = [result.text]
            self.length = len(result.text)
        m = result.metrics
        self.ttft_ms = m.ttft_ms if m.ttft_ms is not None else self.ttft_ms
        self.tokens_per_s = m.tokens_per_s if m.tokens_per_s is not None else self.tokens_per_s
        self.e2e_ms = m.e2e_ms
        if m.output_tokens:
            self.usage_tokens = m.output_tokens
        self.cache = result.cache
        self.model = result.request.model
        self.request_id = result.request_id
        self.finish_reason = result.finish_reason or self.finish_reason
        if result.error:
            self.error = f"{result.error_kind or 'error'}: {result.error}"

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


def render_static(lanes: list[tuple[LaneState, dict[str, Any]]]) -> StaticView:
    """Final texts + figures (lane, its meta) as Markdown and HTML."""
    md: list[str] = []
    cells: list[str] = []
    for ln, meta in lanes:
        line = status_line(meta)
        md.append(f"**{ln.name}** — {line}\n\n```text\n{ln.text}\n```\n")
        cells.append(
            f'<div class="wb-sv-lane"><div class="wb-sv-head"><b>{html.escape(ln.name)}</b> '
            f"<span>{html.escape(line)}</span></div>"
            f'<pre class="wb-sv-text" style="white-space:pre-wrap">{html.escape(ln.text)}</pre></div>'
        )
    body = "".join(cells)
    return StaticView(
        "\n".join(md),
        f'<div class="wb-sv" style="display:grid;grid-template-columns:repeat({len(cells)},1fr);'
        f'gap:8px">{body}</div>',
    )


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


@dataclass(slots=True)
class PendingEnd:
    """An end sent to a live front end as a custom message, waiting for its `ack`.

    `text` and `meta` are what the front end stores in its model when its check passes; the kernel records
    the same values on the ack. A full sync settles every pending end (it carries the values to both sides).
    """

    lane: str
    seq: int
    n16: int
    crc: int
    text: str
    meta: dict[str, Any]
    handle: Any = None  # the grace timer (asyncio.TimerHandle) once armed

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


def replace_meta(lanes: list[dict[str, Any]], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """`lanes` with the entry named like `meta` replaced (or appended); stream_view.js does the same."""
    out = [meta if m.get("name") == meta["name"] else m for m in lanes]
    if not any(m.get("name") == meta["name"] for m in lanes):
        out.append(meta)
    return out
