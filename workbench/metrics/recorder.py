"""The recorder: stamps on arrival, keeps raw stamps, and turns them into `Metrics` by DESIGN.md's rules.

The client calls, in order: `sent()` just before the request goes out, `connection(...)` once the
connection is known, `received(n_bytes, t_ns)` for every network read (stamped by the caller *before* any
parsing), `event(ev)` for every parsed event, then `finish(...)`. Cache replay uses the same recorder, so
hits and live responses are measured one way.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from workbench._types import (
    ChunkRecord,
    ChunkStamps,
    DoneEvent,
    Metrics,
    ProtocolName,
    Request,
    Status,
    StreamEvent,
    StreamResult,
    TextDelta,
    Usage,
    UsageEvent,
)

__all__ = ["Recorder", "compute_metrics"]

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
    """Metrics from raw stamps. Only chunks that carry text count as tokens (never role-only or usage)."""
    return _metrics(
        sent_ns=sent_ns,
        first_byte_ns=first_byte_ns,
        end_ns=end_ns,
        token_ns=[c.t_ns for c in chunks if c.text],
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
    )


class Recorder:
    """Collects one request's raw stamps. Not thread-safe: one recorder per stream."""

    __slots__ = (
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
        # One chunk = one entry in each flat list (see ChunkStamps: no object per chunk while streaming).
        self._t_ns: list[int] = []
        self._texts: list[str] = []
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

    def event(self, ev: StreamEvent) -> None:
        if isinstance(ev, TextDelta):
            if ev.text:
                self._t_ns.append(ev.t_ns)
                self._texts.append(ev.text)
        elif isinstance(ev, UsageEvent):
            self.usage = ev.usage
        elif isinstance(ev, DoneEvent):
            if ev.finish_reason is not None:
                self.finish_reason = ev.finish_reason
            self.server.update(ev.server)

    def events(self, events: list[StreamEvent]) -> None:
        """`event` for each of one read's events; the per-chunk path of a fast stream, so kept tight."""
        t_append, x_append = self._t_ns.append, self._texts.append
        for ev in events:
            if type(ev) is TextDelta:
                text = ev.text
                if text:
                    t_append(ev.t_ns)
                    x_append(text)
            else:
                self.event(ev)

    @property
    def n_chunks(self) -> int:
        """Text-bearing chunks recorded so far."""
        return len(self._texts)

    @property
    def chunks(self) -> list[ChunkRecord]:
        """The chunks recorded so far, as records (built on each read: use `n_chunks` for a count)."""
        return ChunkStamps(self._t_ns, self._texts).records()

    @property
    def text(self) -> str:
        return "".join(self._texts)

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
            token_ns=self._t_ns,  # only text-bearing chunks are recorded
            usage=self.usage,
            connect_ms=self.connect_ms,
            connection_reused=self.connection_reused,
            bytes_received=self.bytes_received,
        )
        return StreamResult(
            request=self.request,
            backend=self.backend,
            protocol=self.protocol,
            text=self.text,
            status=status,
            metrics=metrics,
            sent_ns=self.sent_ns,
            first_byte_ns=self.first_byte_ns,
            end_ns=end,
            # copies: the recorder may be fed again (a retried replay) after this result is handed out
            chunks=cast("list[ChunkRecord]", ChunkStamps(list(self._t_ns), list(self._texts))),
            finish_reason=self.finish_reason,
            usage=self.usage,
            error=None if error is None else str(error),
            error_kind=None if error is None else type(error).__name__,
            http_version=self.http_version,
            server=dict(self.server),
            optimizations=dict(self.optimizations),
        )
