"""Hand-built StreamResults for frame and stats tests, made through the real Recorder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from workbench import (
    ChunkRecord,
    DoneEvent,
    Optimizations,
    Request,
    StreamResult,
    TextDelta,
    Usage,
    UsageEvent,
)
from workbench.metrics import Recorder, compute_metrics

MS = 1_000_000

MakeResult = Callable[..., StreamResult]


def _make(
    texts_at_ms: Sequence[tuple[float, str]] = ((10.0, "a"), (15.0, "b"), (22.0, "c")),
    *,
    sent_ns: int = 1_000 * MS,
    tags: dict[str, Any] | None = None,
    opts: Optimizations | None = None,
    usage: int | None = None,
    status: str = "ok",
    error: BaseException | None = None,
    protocol: str = "ollama",
    prompt: str = "hello",
    empty_chunks_at_ms: Sequence[float] = (),
    connect_ms: float | None = 3.0,
    reused: bool | None = False,
) -> StreamResult:
    req = Request.chat("sim-small", prompt, tags=tags or {})
    rec = Recorder(req, backend="http://127.0.0.1:1", protocol=protocol,  # type: ignore[arg-type]
                   optimizations=(opts or Optimizations()).as_dict())
    rec.sent(sent_ns)
    rec.connection(connect_ms=connect_ms, reused=reused, http_version="HTTP/1.1")
    first = min([t for t, _ in texts_at_ms] + list(empty_chunks_at_ms), default=None)
    if first is not None:
        rec.received(100, sent_ns + int((first - 1) * MS))
    for t, text in texts_at_ms:
        rec.event(TextDelta(text, sent_ns + int(t * MS)))
    if usage is not None:
        rec.event(UsageEvent(Usage(completion_tokens=usage)))
    rec.event(DoneEvent("stop"))
    last = max([t for t, _ in texts_at_ms] + list(empty_chunks_at_ms), default=0.0)
    res = rec.finish(status, error=error, end_ns=sent_ns + int((last + 1) * MS))  # type: ignore[arg-type]
    if empty_chunks_at_ms:
        # The recorder drops empty deltas; cache replay and other producers may keep them, so insert by hand.
        chunks = sorted(res.chunks + [ChunkRecord(sent_ns + int(t * MS), "") for t in empty_chunks_at_ms],
                        key=lambda c: c.t_ns)
        res.chunks = chunks
        res.metrics = compute_metrics(sent_ns=sent_ns, first_byte_ns=res.first_byte_ns, end_ns=res.end_ns,
                                      chunks=chunks, usage=res.usage, connect_ms=connect_ms,
                                      connection_reused=reused, bytes_received=res.metrics.bytes_received)
    return res


@pytest.fixture
def make_result() -> MakeResult:
    return _make
