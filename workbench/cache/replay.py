"""Serve a cache hit as a real stream: the original chunk boundaries, optionally the original timing.

`ReplaySource` is a stream source (`workbench.stream.sources`): it hands the engine one stored chunk per
read, so every chunk goes through the same engine and `Recorder` as a live chunk (stamped when handed
over), and a hit's TTFT, ITL and tokens/s are measured the way a live response's are; the result's
``cache`` column keeps them apart in frames. `Replay` / `AsyncReplay` drive one on its own
(`ResponseCache.replay` / `areplay`); the client's stream drives it when its gate plans a hit.

The send stamp is the caller's ``sent_ns`` when given (the gate passes the moment it started the lookup),
so a hit's TTFT includes the lookup time.

Timing: with ``timing=False`` every chunk is handed over at once. With ``timing=True`` the first chunk is
still immediate (the point of a hit), and each later chunk comes at its recorded offset from the first,
so the inter-chunk gaps are the original ones.

``saved_ms`` is the original ``done_ms`` minus the replay's ``done_ms``; ``saved_tokens`` is the original
output token count (tokens the server did not have to generate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from workbench._exceptions import CancelledError
from workbench._types import CacheKind, DoneEvent, Request, StreamEvent, StreamResult, TextDelta, UsageEvent
from workbench.cache.entry import CacheEntry
from workbench.stream import AsyncStream, EngineSpec, Plan, Starter, Stream, StreamEngine

if TYPE_CHECKING:
    from workbench.cache.tiers import CacheHit

__all__ = ["AsyncReplay", "Replay", "ReplaySource", "replay_starter"]


class ReplaySource:
    """A stored answer as a source: one chunk per read, then usage and done; sync and async faces."""

    def __init__(
        self,
        entry: CacheEntry,
        *,
        kind: CacheKind = "exact",
        similarity: float | None = None,
        matched_prompt: str | None = None,
        timing: bool = False,
        sent_ns: int | None = None,
    ) -> None:
        self.entry = entry
        self.kind: CacheKind = kind
        self.similarity = similarity
        self.matched_prompt = matched_prompt
        self.timing = timing
        self._sent_ns = sent_ns
        self._i = 0
        self._first_ns = 0

    @classmethod
    def from_hit(cls, hit: CacheHit, *, timing: bool = False, sent_ns: int | None = None) -> ReplaySource:
        return cls(
            hit.entry,
            kind=hit.kind,
            similarity=hit.similarity,
            matched_prompt=hit.matched_prompt,
            timing=timing,
            sent_ns=sent_ns,
        )

    # -- the source interface --

    def open(self, engine: StreamEngine) -> None:
        # `sent_ns` from the caller = when the user asked, before the cache lookup: a hit's TTFT then
        # includes the lookup, as the user experiences it.
        engine.sent(self._sent_ns)
        engine.connected(connect_ms=None, reused=None, http_version="cache")
        engine.decorate = self._decorate

    async def aopen(self, engine: StreamEngine) -> None:
        self.open(engine)

    def read(self) -> list[StreamEvent] | None:
        d = self._delay_ns()
        if d:
            time.sleep(d / 1e9)
        return self._next()

    async def aread(self) -> list[StreamEvent] | None:
        d = self._delay_ns()
        if d:
            await asyncio.sleep(d / 1e9)
        return self._next()

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    # -- what to hand over, and when --

    def _delay_ns(self) -> int:
        chunks = self.entry.chunks
        if not self.timing or self._i == 0 or self._i >= len(chunks):
            return 0
        return max(0, self._first_ns + chunks[self._i][0] - time.perf_counter_ns())

    def _next(self) -> list[StreamEvent] | None:
        chunks = self.entry.chunks
        i = self._i
        self._i += 1
        t = time.perf_counter_ns()  # the engine restamps on hand-over; this one schedules the next chunk
        if i < len(chunks):
            if i == 0:
                self._first_ns = t
            return [TextDelta(chunks[i][1], t)]
        if i == len(chunks):
            tail: list[StreamEvent] = []
            if self.entry.usage is not None:
                tail.append(UsageEvent(self.entry.usage, t))
            tail.append(DoneEvent(self.entry.finish_reason, dict(self.entry.server), t))
            return tail
        return None

    def _decorate(self, res: StreamResult) -> None:
        res.cache = self.kind
        res.cache_similarity = self.similarity
        res.cache_matched_prompt = self.matched_prompt
        if res.status == "ok":
            orig = self.entry.done_ms
            res.saved_ms = None if orig is None or res.metrics.done_ms is None else orig - res.metrics.done_ms
            res.saved_tokens = self.entry.output_tokens


def replay_starter(
    source: ReplaySource,
    request: Request,
    *,
    backend: str | None = None,
    optimizations: Mapping[str, Any] | None = None,
) -> Starter:
    """What `Replay(request, starter)` / `AsyncReplay` drive: the stored answer, labelled with `backend` (the
    entry's own by default) and `optimizations`."""
    entry = source.entry
    spec = EngineSpec(
        backend=entry.backend if backend is None else backend,
        url="cache",
        protocol=entry.protocol,
        optimizations=dict(optimizations or {}),
    )
    plan = Plan("hit", kind=source.kind, source=source, protocol=entry.protocol, local=True)
    return Starter(request, spec, live=None, fixed=plan)


class Replay(Stream):
    """A replayed stream on its own, ``Replay(request, replay_starter(...))``: iterate for events, then
    `.result`. A stop (`cancel()`, thread-safe) ends the iteration quietly; the result says ``cancelled``."""

    def __iter__(self) -> Iterator[StreamEvent]:
        try:
            yield from super().__iter__()
        except CancelledError:
            return

    @property
    def result(self) -> StreamResult:
        if self.engine is None or self.engine.result is None:
            for _ in self:
                pass
        return super().result


class AsyncReplay(AsyncStream):
    """The asyncio form of `Replay`: ``async for ev in replay``, then ``replay.result``."""

    async def _quiet(self) -> AsyncIterator[StreamEvent]:
        try:
            async for ev in self._iterate():
                yield ev
        except CancelledError:
            return

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._quiet()
