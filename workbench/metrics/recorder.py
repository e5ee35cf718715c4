"""The recorder: stamps on arrival, keeps raw stamps, and turns them into `Metrics` by DESIGN.md's rules.

The client calls, in order: `sent()` just before the request goes out, `connection(...)` once the
connection is known, `received(n_bytes, t_ns)` for every network read (stamped by the caller *before* any
parsing), `event(ev)` for every parsed event, then `finish(...)`. Cache replay uses the same recorder, so
hits and live responses are measured one way.

Which chunks are token chunks (they set `ttft_ms`, `e2e_ms`, `itl_ms`, and `output_tokens` when the server
sends no usage): choice 0's chunks that carried generated output, that is answer text, reasoning text or a
tool-call piece. Role-only, finish-only and usage chunks never count, nor do the other choices of an n > 1
request (they are kept on `StreamResult.choices`). Reasoning counts because the model generated it, in the
same decode loop, and servers count it in `usage.completion_tokens` (OpenAI's `reasoning_tokens` are part of
it): leaving it out would start TTFT after a long think and divide every token by the answer's time only.
vLLM's `benchmark_serving` likewise starts TTFT at the first chunk with choices (it counts the role-only
chunk too, which we do not). What the reader sees first is `first_text_ms`, the first answer-text chunk:
equal to `ttft_ms` unless the model reasoned or called a tool first. A chunk carrying both reasoning and
text (a server's hand-over chunk) counts as two chunks when tokens are counted by chunks.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from workbench._types import (
    Choice,
    ChoiceDelta,
    ChunkKind,
    ChunkRecord,
    ChunkStamps,
    DoneEvent,
    Metrics,
    ProtocolName,
    ReasoningDelta,
    Request,
    Status,
    StreamEvent,
    StreamResult,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
)

__all__ = ["Recorder", "ToolCallAssembler", "compute_metrics"]

_NS_PER_MS = 1_000_000.0


def _ms(t_ns: int | None, sent_ns: int) -> float | None:
    return None if t_ns is None else (t_ns - sent_ns) / _NS_PER_MS


def _gaps_ms(token_ns: list[int]) -> tuple[float, ...]:
    """(b - a) / 1e6 for successive stamps, bit for bit. One gap per chunk of a stream that may have hundreds
    of thousands: numpy does the long ones (int64 difference, then the same IEEE division Python does)."""
    if len(token_ns) < 256:
        return tuple((b - a) / _NS_PER_MS for a, b in itertools.pairwise(token_ns))
    gaps: list[float] = (np.diff(np.array(token_ns, dtype=np.int64)) / _NS_PER_MS).tolist()
    return tuple(gaps)


def compute_metrics(
    *,
    sent_ns: int,
    first_byte_ns: int | None,
    end_ns: int,
    chunks: list[ChunkRecord],
    usage: Usage | None,
    connect_ms: float | None,
    connection_reused: bool | None,
    bytes_received: int,
) -> Metrics:
    """Metrics from raw stamps. Token chunks are those that carried output (see the module docstring)."""
    return _metrics(
        sent_ns=sent_ns,
        first_byte_ns=first_byte_ns,
        end_ns=end_ns,
        token_ns=[c.t_ns for c in chunks if c.text or c.kind != "text"],
        first_text_ns=next((c.t_ns for c in chunks if c.text), None),
        usage=usage,
        connect_ms=connect_ms,
        connection_reused=connection_reused,
        bytes_received=bytes_received,
    )


def _metrics(
    *,
    sent_ns: int,
    first_byte_ns: int | None,
    end_ns: int,
    token_ns: list[int],
    first_text_ns: int | None,
    usage: Usage | None,
    connect_ms: float | None,
    connection_reused: bool | None,
    bytes_received: int,
) -> Metrics:
    ttft = _ms(token_ns[0], sent_ns) if token_ns else None
    e2e = _ms(token_ns[-1], sent_ns) if token_ns else None
    itl = _gaps_ms(token_ns)
    if usage is not None and usage.completion_tokens is not None:
        out_tokens, source = usage.completion_tokens, "usage"
    else:
        out_tokens, source = len(token_ns), "chunks"
    tpot = None
    tps = None
    if ttft is not None and e2e is not None:
        span = e2e - ttft
        if out_tokens > 1:
            tpot = span / (out_tokens - 1)
        if span > 0:
            tps = out_tokens / (span / 1000.0)
    return Metrics(
        ttfb_ms=_ms(first_byte_ns, sent_ns),
        ttft_ms=ttft,
        e2e_ms=e2e,
        done_ms=_ms(end_ns, sent_ns),
        itl_ms=itl,
        tpot_ms=tpot,
        output_tokens=out_tokens,
        tokens_source="usage" if source == "usage" else "chunks",
        tokens_per_s=tps,
        connect_ms=connect_ms,
        connection_reused=connection_reused,
        bytes_received=bytes_received,
        first_text_ms=_ms(first_text_ns, sent_ns),
    )


class ToolCallAssembler:
    """Tool calls of one choice from their ToolCallDelta pieces, by index.

    `arguments` fragments are joined in arrival order. `id` and `name` are set by the first piece that
    carries them: llama-cpp-python and TGI repeat them on every piece, OpenAI and vLLM send them once.
    """

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, tuple[list[str | None], list[str]]] = {}

    def add(self, piece: ToolCallDelta) -> None:
        entry = self._calls.get(piece.index)
        if entry is None:
            self._calls[piece.index] = ([piece.id or None, piece.name or None], [piece.arguments])
            return
        head, args = entry
        if head[0] is None and piece.id:
            head[0] = piece.id
        if head[1] is None and piece.name:
            head[1] = piece.name
        args.append(piece.arguments)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(i, head[0], head[1], "".join(args))
            for i, (head, args) in sorted(self._calls.items())
        ]


class _Other:
    """What one choice other than 0 produced (n > 1): kept apart, never part of the metrics."""

    __slots__ = ("calls", "reasoning", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls = ToolCallAssembler()


class Recorder:
    """Collects one request's raw stamps. Not thread-safe: one recorder per stream."""

    __slots__ = (
        "_calls",
        "_finishes",
        "_kinds",
        "_others",
        "_reasoning",
        "_t_ns",
        "_texts",
        "backend",
        "bytes_received",
        "connect_ms",
        "connection_reused",
        "finish_reason",
        "first_byte_ns",
        "http_version",
        "optimizations",
        "protocol",
        "request",
        "sent_ns",
        "server",
        "usage",
    )

    def __init__(
        self,
        request: Request,
        *,
        backend: str,
        protocol: ProtocolName,
        optimizations: Mapping[str, Any] | None = None,
    ) -> None:
        self.request = request
        self.backend = backend
        self.protocol: ProtocolName = protocol
        self.optimizations = dict(optimizations or {})
        self.sent_ns = 0
        self.first_byte_ns: int | None = None
        # One output chunk = one entry in each flat list (see ChunkStamps: no object per chunk while
        # streaming); `_kinds` is made only when a chunk is not answer text (reasoning, tool-call pieces).
        self._t_ns: list[int] = []
        self._texts: list[str] = []
        self._kinds: list[ChunkKind] | None = None
        self._reasoning: list[str] = []
        self._calls = ToolCallAssembler()
        self._others: dict[int, _Other] = {}
        self._finishes: dict[int, str] = {}
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.server: dict[str, Any] = {}
        self.connect_ms: float | None = None
        self.connection_reused: bool | None = None
        self.bytes_received = 0
        self.http_version = ""

    def sent(self, t_ns: int | None = None) -> int:
        self.sent_ns = time.perf_counter_ns() if t_ns is None else t_ns
        return self.sent_ns

    def connection(self, *, connect_ms: float | None, reused: bool | None, http_version: str = "") -> None:
        self.connect_ms = connect_ms
        self.connection_reused = reused
        if http_version:
            self.http_version = http_version

    def received(self, n_bytes: int, t_ns: int) -> None:
        if self.first_byte_ns is None and n_bytes:
            self.first_byte_ns = t_ns
        self.bytes_received += n_bytes

    def _mark(self, t_ns: int, kind: ChunkKind) -> None:
        """A choice-0 chunk that carried output other than answer text: a token chunk with empty text."""
        if self._kinds is None:
            self._kinds = ["text"] * len(self._t_ns)
        self._t_ns.append(t_ns)
        self._texts.append("")
        self._kinds.append(kind)

    def _other(self, choice: int) -> _Other:
        other = self._others.get(choice)
        if other is None:
            other = self._others[choice] = _Other()
        return other

    def event(self, ev: StreamEvent) -> None:
        if isinstance(ev, TextDelta):
            if ev.text:
                self._t_ns.append(ev.t_ns)
                self._texts.append(ev.text)
                if self._kinds is not None:
                    self._kinds.append("text")
        elif isinstance(ev, UsageEvent):
            self.usage = ev.usage
        elif isinstance(ev, DoneEvent):
            if ev.finish_reason is not None:
                self.finish_reason = ev.finish_reason
            self.server.update(ev.server)
            self._finishes.update(ev.finish_reasons)
        elif isinstance(ev, ReasoningDelta):
            if ev.choice:
                self._other(ev.choice).reasoning.append(ev.text)
            elif ev.text:
                self._mark(ev.t_ns, "reasoning")
                self._reasoning.append(ev.text)
        elif isinstance(ev, ToolCallDelta):
            if ev.choice:
                self._other(ev.choice).calls.add(ev)
            else:
                self._mark(ev.t_ns, "tool_call")
                self._calls.add(ev)
        elif isinstance(ev, ChoiceDelta):
            self._other(ev.choice).text.append(ev.text)

    def events(self, events: list[StreamEvent]) -> None:
        """`event` for each of one read's events; the per-chunk path of a fast stream, so kept tight."""
        if self._kinds is not None:  # a stream with reasoning or tool calls: the general path
            for ev in events:
                self.event(ev)
            return
        t_append, x_append = self._t_ns.append, self._texts.append
        it = iter(events)
        for ev in it:
            if type(ev) is TextDelta:
                text = ev.text
                if text:
                    t_append(ev.t_ns)
                    x_append(text)
            else:
                self.event(ev)
                if self._kinds is not None:  # it was reasoning or a tool call: the rest as above
                    for rest in it:
                        self.event(rest)
                    return

    @property
    def n_chunks(self) -> int:
        """Token chunks recorded so far (answer text, reasoning, tool-call pieces of choice 0)."""
        return len(self._texts)

    @property
    def chunks(self) -> list[ChunkRecord]:
        """The chunks recorded so far, as records (built on each read: use `n_chunks` for a count)."""
        return ChunkStamps(self._t_ns, self._texts, self._kinds).records()

    @property
    def text(self) -> str:
        return "".join(self._texts)

    def _first_text_ns(self) -> int | None:
        if not self._t_ns:
            return None
        if self._kinds is None:
            return self._t_ns[0]
        try:
            return self._t_ns[self._kinds.index("text")]
        except ValueError:
            return None

    def _choices(self, text: str, reasoning: str, calls: list[ToolCall]) -> list[Choice]:
        """Every choice, 0 first, when the stream carried several (n > 1); else none."""
        others = self._others.keys() | (self._finishes.keys() - {0})
        if not others:
            return []
        out = [Choice(0, text, reasoning, tuple(calls), self.finish_reason)]
        for i in sorted(others):
            other = self._others.get(i) or _Other()
            out.append(
                Choice(
                    i,
                    "".join(other.text),
                    "".join(other.reasoning),
                    tuple(other.calls.calls()),
                    self._finishes.get(i),
                )
            )
        return out

    def finish(
        self,
        status: Status = "ok",
        *,
        error: BaseException | None = None,
        end_ns: int | None = None,
    ) -> StreamResult:
        end = time.perf_counter_ns() if end_ns is None else end_ns
        metrics = _metrics(
            sent_ns=self.sent_ns,
            first_byte_ns=self.first_byte_ns,
            end_ns=end,
            token_ns=self._t_ns,  # only output-bearing chunks are recorded
            first_text_ns=self._first_text_ns(),
            usage=self.usage,
            connect_ms=self.connect_ms,
            connection_reused=self.connection_reused,
            bytes_received=self.bytes_received,
        )
        text = self.text
        reasoning = "".join(self._reasoning)
        calls = self._calls.calls() if self._calls else []
        kinds = None if self._kinds is None else list(self._kinds)
        return StreamResult(
            request=self.request,
            backend=self.backend,
            protocol=self.protocol,
            text=text,
            status=status,
            metrics=metrics,
            sent_ns=self.sent_ns,
            first_byte_ns=self.first_byte_ns,
            end_ns=end,
            # copies: the recorder may be fed again (a retried replay) after this result is handed out
            chunks=cast("list[ChunkRecord]", ChunkStamps(list(self._t_ns), list(self._texts), kinds)),
            finish_reason=self.finish_reason,
            usage=self.usage,
            error=None if error is None else str(error),
            error_kind=None if error is None else type(error).__name__,
            http_version=self.http_version,
            server=dict(self.server),
            optimizations=dict(self.optimizations),
            reasoning=reasoning,
            tool_calls=calls,
            choices=self._choices(text, reasoning, calls),
        )
