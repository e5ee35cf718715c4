"""Serve a cache hit as a real stream: the original chunk boundaries, optionally the original timing.

`ReplayCore` is the I/O-free part (what to emit next, and when); `Replay` (sync, sleeps with
``time.sleep``) and `AsyncReplay` (``asyncio.sleep``) drive it. Every emitted chunk goes through a
`workbench.metrics.Recorder` exactly as a live chunk does (stamped with ``perf_counter_ns`` when emitted),
so a hit's TTFT, ITL and tokens/s are measured the same way as a live response's; the result's ``cache``
column keeps them apart in frames.

The send stamp is the caller's ``sent_ns`` when given (the client hook passes the moment it started the
lookup), so a hit's TTFT includes the lookup time.

Timing: with ``timing=False`` every chunk is emitted at once. With ``timing=True`` the first chunk is still
emitted at once (the point of a hit), and each later chunk at its recorded offset from the first, so the
inter-chunk gaps are the original ones.

``saved_ms`` is the original ``done_ms`` minus the replay's ``done_ms``; ``saved_tokens`` is the original
output token count (tokens the server did not have to generate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any

from workbench._exceptions import CancelledError
from workbench._types import CacheKind, DoneEvent, Request, StreamEvent, StreamResult, TextDelta, UsageEvent
from workbench.cache.entry import CacheEntry
from workbench.metrics.recorder import Recorder

__all__ = ["AsyncReplay", "Replay", "ReplayCore", "replay_result"]


class ReplayCore:
    """Sans-I/O replay: `start()`, then `delay_ns()`/`emit()` until `emit()` returns None, then `finish()`."""

    def __init__(
        self,
        entry: CacheEntry,
        request: Request,
        *,
        kind: CacheKind = "exact",
        similarity: float | None = None,
        matched_prompt: str | None = None,
        timing: bool = False,
        backend: str | None = None,
        optimizations: Mapping[str, Any] | None = None,
        sent_ns: int | None = None,
    ) -> None:
        self.entry = entry
        self._sent_ns = sent_ns
        self.kind: CacheKind = kind
        self.similarity = similarity
        self.matched_prompt = matched_prompt
        self.timing = timing
        self.recorder = Recorder(
            request,
            backend=entry.backend if backend is None else backend,
            protocol=entry.protocol,
            optimizations=optimizations,
        )
        self._i = 0
        self._t0 = 0
        self._first_ns = 0
        self._tail_sent = False
        self.result: StreamResult | None = None

    def start(self) -> None:
        # `sent_ns` from the caller = when the user asked, before the cache lookup: a hit's TTFT then
        # includes the lookup, as the user experiences it.
        self._t0 = self.recorder.sent(self._sent_ns)
        self.recorder.connection(connect_ms=None, reused=None, http_version="cache")

    def delay_ns(self) -> int:
        """How long to wait before the next `emit()` (0 unless timing is replayed)."""
        if not self.timing or self._i == 0 or self._i >= len(self.entry.chunks):
            return 0
        due = self._first_ns + self.entry.chunks[self._i][0]
        return max(0, due - time.perf_counter_ns())

    def emit(self) -> StreamEvent | None:
        chunks = self.entry.chunks
        if self._i < len(chunks):
            text = chunks[self._i][1]
            t = time.perf_counter_ns()
            if self._i == 0:
                self._first_ns = t
            self.recorder.received(len(text.encode()), t)
            ev: StreamEvent = TextDelta(text, t)
            self._i += 1
        elif not self._tail_sent:
            usage = self.entry.usage
            self._tail_sent = True
            self._i += 1
            if usage is not None:
                ev = UsageEvent(usage, time.perf_counter_ns())
            else:
                return self.emit()
        elif self._i == len(chunks) + 1:
            self._i += 1
            ev = DoneEvent(self.entry.finish_reason, dict(self.entry.server), time.perf_counter_ns())
        else:
            return None
        self.recorder.event(ev)
        return ev

    def finish(self, *, cancelled: bool = False) -> StreamResult:
        if self.result is not None:
            return self.result
        err = CancelledError("replay stopped on request") if cancelled else None
        res = self.recorder.finish("cancelled" if cancelled else "ok", error=err)
        res.cache = self.kind
        res.cache_similarity = self.similarity
        res.cache_matched_prompt = self.matched_prompt
        if not cancelled:
            orig = self.entry.done_ms
            res.saved_ms = None if orig is None or res.metrics.done_ms is None else orig - res.metrics.done_ms
            res.saved_tokens = self.entry.output_tokens
        self.result = res
        return res


class Replay:
    """A replayed stream: iterate for events, then `.result`. Context manager; `cancel()` is thread-safe."""

    def __init__(self, core: ReplayCore) -> None:
        self.core = core
        self._cancelled = False
        self._started = False

    @property
    def result(self) -> StreamResult:
        if self.core.result is None:
            for _ in self:
                pass
        assert self.core.result is not None
        return self.core.result

    def cancel(self) -> None:
        self._cancelled = True

    def __iter__(self) -> Iterator[StreamEvent]:
        if self._started:
            return
        self._started = True
        self.core.start()
        while not self._cancelled:
            d = self.core.delay_ns()
            if d:
                time.sleep(d / 1e9)
                if self._cancelled:
                    break
            ev = self.core.emit()
            if ev is None:
                self.core.finish()
                return
            yield ev
        self.core.finish(cancelled=True)

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.core.result is None:
            self.core.finish(cancelled=True)


class AsyncReplay:
    """The async twin of `Replay`: ``async for ev in replay``; ``await replay.aresult()``."""

    def __init__(self, core: ReplayCore) -> None:
        self.core = core
        self._cancelled = False
        self._started = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def result(self) -> StreamResult:
        if self.core.result is None:
            raise RuntimeError("the replay has not finished; iterate it first")
        return self.core.result

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        if self._started:
            return
        self._started = True
        self.core.start()
        while not self._cancelled:
            d = self.core.delay_ns()
            if d:
                await asyncio.sleep(d / 1e9)
                if self._cancelled:
                    break
            ev = self.core.emit()
            if ev is None:
                self.core.finish()
                return
            yield ev
        self.core.finish(cancelled=True)

    async def __aenter__(self) -> AsyncReplay:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.core.result is None:
            self.core.finish(cancelled=True)


def replay_result(core: ReplayCore) -> StreamResult:
    """Drain a replay at once (no timing sleeps unless the core asks for them) and return its result."""
    return Replay(core).result
