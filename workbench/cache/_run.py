"""One request through a `ResponseCache`, independent of HTTP: `CacheRun` (sync) and `AsyncCacheRun`.

The client's `CachedStream` (workbench.cache._client) drives one of these per request:

* policy says bypass (sampled request) -> the live stream, its result marked ``cache="bypass"``, never stored;
* a hit -> a `Replay` of the stored chunks (``cache="exact"`` or ``"semantic"``);
* a miss -> single-flight on the request key: the first caller (leader) runs the live stream, publishing
  every event to the flight and storing the result when it completes with a `DoneEvent`; concurrent
  identical callers (followers) get the leader's events as they arrive, measured by their own `Recorder`.
  All of them say ``cache="miss"``. See `workbench.cache.singleflight` for what followers get when the
  leader fails (the same error type) or is cancelled (retry if nothing was received yet).

The live stream is whatever the client makes (`LiveStream`: iterable of events, ``.result``, ``.cancel()``,
``.close()``), started through a callable so a hit never opens a connection. A cancelled replay raises
`CancelledError` carrying ``.result``, as a cancelled live stream does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from workbench._exceptions import CancelledError, ConfigError, WorkbenchError
from workbench._types import (
    ChoiceDelta,
    DoneEvent,
    ProtocolName,
    ReasoningDelta,
    Request,
    StreamEvent,
    StreamResult,
    TextDelta,
    ToolCallDelta,
)
from workbench.cache.replay import AsyncReplay, Replay
from workbench.cache.singleflight import AsyncFlight, AsyncSingleFlight, Flight, FlightCancelled, SingleFlight
from workbench.cache.tiers import ResponseCache
from workbench.metrics.recorder import Recorder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

__all__ = [
    "NOT_ENDED",
    "AsyncCacheHook",
    "AsyncCacheRun",
    "AsyncLiveStream",
    "CacheHook",
    "CacheRun",
    "LiveStream",
]

NOT_ENDED = "the stream has not ended yet"


class LiveStream(Protocol):
    def __iter__(self) -> Iterator[StreamEvent]: ...

    @property
    def result(self) -> StreamResult: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


class AsyncLiveStream(Protocol):
    def __aiter__(self) -> AsyncIterator[StreamEvent]: ...

    @property
    def result(self) -> StreamResult: ...

    def cancel(self) -> None: ...

    async def aclose(self) -> None: ...


def _protocol(p: ProtocolName | Callable[[], ProtocolName | None]) -> ProtocolName:
    # A callable defers the client's protocol detection (a network probe) until a follower needs it; if it
    # cannot tell yet, the follower takes the leader's protocol when the flight ends (`_adopt`).
    if isinstance(p, str):
        return p
    try:
        return p() or "openai"
    except Exception:
        return "openai"


def _adopt(rec: Recorder, leader_result: object) -> None:
    """Connection facts a follower shares with the leader (it rode on the leader's response)."""
    if isinstance(leader_result, StreamResult):
        rec.protocol = leader_result.protocol
        rec.http_version = leader_result.http_version


def _stamp(rec: Recorder, ev: StreamEvent) -> None:
    # A follower's chunk "arrives" when the flight hands it over: stamp then, as a live read would be.
    if isinstance(ev, TextDelta):
        t = time.perf_counter_ns()
        rec.received(len(ev.text.encode()), t)
        rec.event(TextDelta(ev.text, t))
    elif isinstance(ev, ReasoningDelta | ChoiceDelta):  # output chunks too (they count for TTFT)
        rec.event(ev._replace(t_ns=time.perf_counter_ns()))
    elif isinstance(ev, ToolCallDelta):
        rec.event(dataclasses.replace(ev, t_ns=time.perf_counter_ns()))
    else:
        rec.event(ev)


def _mark(result: StreamResult | None, kind: str) -> StreamResult | None:
    if result is not None and result.cache == "off":
        result.cache = kind  # type: ignore[assignment]
    return result


def _stopped(result: StreamResult) -> CancelledError:
    return CancelledError("the stream was stopped on request", result=result)


class _HookBase:
    def __init__(
        self,
        cache: ResponseCache,
        *,
        backend: str,
        protocol: ProtocolName | Callable[[], ProtocolName | None],
        optimizations: Mapping[str, Any] | None = None,
        idle_timeout: float | None = 60.0,
        identity: str | None = None,
    ) -> None:
        self.cache = cache
        self.backend = backend  # what results show (the backend's label)
        # what keys use (`workbench.cache.key.backend_identity`: normalised URL [+ credential hash])
        self.identity = backend if identity is None else identity
        self._protocol = protocol
        self.optimizations = dict(optimizations or {})
        self.idle_timeout = idle_timeout

    @property
    def protocol(self) -> ProtocolName:
        return _protocol(self._protocol)

    def store(self, request: Request, result: StreamResult, *, done_seen: bool) -> None:
        """Store a finished answer. Never raises: the stream succeeded and its answer is the caller's
        whatever the cache does (a failing tier is counted and warned by the cache)."""
        try:
            self.cache.store(request, result, backend=self.identity, done_seen=done_seen)
        except Exception as exc:
            self.cache.store_failed(exc)

    def follower_recorder(self, request: Request) -> Recorder:
        rec = Recorder(
            request, backend=self.backend, protocol=self.protocol, optimizations=self.optimizations
        )
        rec.sent()
        return rec


class CacheHook(_HookBase):
    """Shared by one `Client`: the cache, a single-flight registry, and what to stamp on replayed results."""

    def __init__(self, cache: ResponseCache, **kwargs: Any) -> None:
        super().__init__(cache, **kwargs)
        self.flights: SingleFlight[StreamEvent] = SingleFlight()

    def open(self, request: Request, start_live: Callable[[], LiveStream], *, store: bool = True) -> CacheRun:
        """`store=False`: look up and replay hits, but answer misses live and keep nothing (used by
        `complete()`: a non-streamed answer has no chunk boundaries to replay)."""
        return CacheRun(self, request, start_live, store=store)


class CacheRun:
    """One request through the cache: iterate for events, then `.result`; `cancel()`; `close()`."""

    def __init__(
        self, hook: CacheHook, request: Request, start_live: Callable[[], LiveStream], *, store: bool = True
    ) -> None:
        self.hook = hook
        self._store = store
        self.request = request
        self._start_live = start_live
        self._live: LiveStream | None = None
        self._replay: Replay | None = None
        self._rec: Recorder | None = None  # a follower's own recorder
        self._result: StreamResult | None = None
        self._cancelled = False
        self._gen: Generator[StreamEvent, None, None] | None = None
        self.role = "pending"  # "hit" | "bypass" | "leader" | "follower" | "live" (store=False)

    @property
    def result(self) -> StreamResult:
        if self._result is None:
            if self._gen is None:
                for _ in self:
                    pass
            if self._result is None:
                raise ConfigError(NOT_ENDED, hint="iterate it to the end first")
        return self._result

    @property
    def ended(self) -> bool:
        return self._result is not None

    def cancel(self) -> None:
        self._cancelled = True
        if self._live is not None:
            self._live.cancel()
        if self._replay is not None:
            self._replay.cancel()

    def close(self) -> None:
        """End the run; an unfinished one counts as cancelled (like the client's `Stream.close`)."""
        if self._gen is not None:
            self._gen.close()
        if self._result is None:
            self._result = self._cancelled_result()

    def _cancelled_result(self) -> StreamResult | None:
        if self._replay is not None:
            return self._replay.core.finish(cancelled=True)
        if self._rec is not None:
            return _mark(self._rec.finish("cancelled", error=CancelledError("stopped")), "miss")
        if self._live is not None:
            self._live.close()
            try:
                return _mark(self._live.result, (self.role == "bypass" and "bypass") or "miss")
            except WorkbenchError:
                return None
        return None

    def __enter__(self) -> CacheRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[StreamEvent]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    # ---- paths ----

    def _serve_hit(self, replay: Replay) -> Iterator[StreamEvent]:
        self.role, self._replay = "hit", replay
        if self._cancelled:
            replay.cancel()
        yield from replay
        self._result = replay.result
        if self._result.status == "cancelled":
            raise _stopped(self._result)

    def _run(self) -> Generator[StreamEvent, None, None]:
        hook, cache, req = self.hook, self.hook.cache, self.request
        if cache.bypasses(req):
            cache.lookup(req, backend=hook.identity)  # logged and counted as a bypass
            self.role = "bypass"
            yield from self._live_path(kind="bypass", flight=None)
            return
        key = cache.key(req, backend=hook.identity)
        while True:
            t0 = time.perf_counter_ns()
            hit = cache.lookup(req, backend=hook.identity)
            if hit is not None:
                replay = cache.replay(
                    hit, req, backend=hook.backend, optimizations=hook.optimizations, sent_ns=t0
                )
                yield from self._serve_hit(replay)
                return
            if not self._store:  # complete(): answered live, nobody to share a flight with
                self.role = "live"
                yield from self._live_path(kind="miss", flight=None)
                return
            leader, flight = hook.flights.join(key)
            if leader:
                self.role = "leader"
                try:
                    yield from self._live_path(kind="miss", flight=flight)
                finally:
                    hook.flights.leave(key, flight)
                return
            self.role = "follower"
            try:
                yield from self._follow(flight)
                return
            except FlightCancelled as exc:
                if exc.received or self._cancelled:
                    rec = self._rec
                    partial = None if rec is None else _mark(rec.finish("cancelled", error=exc), "miss")
                    self._result = partial
                    raise CancelledError(
                        "the shared upstream stream was cancelled by the request that started it",
                        hint="retry the request",
                        result=partial,
                    ) from None
                self._rec = None  # nothing received: look up again, or lead the retry

    def _live_path(self, *, kind: str, flight: Flight[StreamEvent] | None) -> Iterator[StreamEvent]:
        hook = self.hook
        done_seen = False
        live = self._live = self._start_live()
        if self._cancelled:
            live.cancel()
        try:
            for ev in live:
                if isinstance(ev, DoneEvent):
                    done_seen = True
                if flight is not None:
                    flight.publish(ev)
                yield ev
        except GeneratorExit:
            # the consumer walked away: the answer is incomplete, followers must not wait for it
            if flight is not None:
                flight.fail(FlightCancelled(0), cancelled=True)
            raise
        except WorkbenchError as exc:
            self._result = _mark(exc.result, kind)
            if flight is not None:
                flight.fail(exc, cancelled=isinstance(exc, CancelledError))
            raise
        except BaseException as exc:
            if flight is not None:
                flight.fail(exc)
            raise
        result = live.result
        self._result = _mark(result, kind)
        if kind == "miss" and result.ok and self._store:
            # store before the flight ends, so a caller arriving after it finds the entry
            hook.store(self.request, result, done_seen=done_seen)
        if flight is not None:
            if result.ok:
                flight.finish(result)
            else:
                flight.fail(FlightCancelled(0), cancelled=True)

    def _follow(self, flight: Flight[StreamEvent]) -> Iterator[StreamEvent]:
        rec = self._rec = self.hook.follower_recorder(self.request)
        try:
            for ev in flight.follow(idle_timeout=self.hook.idle_timeout):
                if self._cancelled:
                    break
                _stamp(rec, ev)
                yield ev
        except WorkbenchError as exc:
            partial = _mark(rec.finish("error", error=exc), "miss")
            exc.result = partial
            self._result = partial
            raise
        if self._cancelled:
            stopped = rec.finish("cancelled", error=CancelledError("stopped"))
            self._result = _mark(stopped, "miss")
            raise _stopped(stopped)
        _adopt(rec, flight.result)
        self._result = _mark(rec.finish("ok"), "miss")


# ---------------------------------------------------------------------------------------------------------
# asyncio twin


class AsyncCacheHook(_HookBase):
    def __init__(self, cache: ResponseCache, **kwargs: Any) -> None:
        super().__init__(cache, **kwargs)
        self.flights: AsyncSingleFlight[StreamEvent] = AsyncSingleFlight()

    def open(
        self,
        request: Request,
        start_live: Callable[[], AsyncLiveStream | Awaitable[AsyncLiveStream]],
        *,
        store: bool = True,
    ) -> AsyncCacheRun:
        return AsyncCacheRun(self, request, start_live, store=store)


class AsyncCacheRun:
    """``async with hook.open(req, start) as s: async for ev in s``; then ``s.result``."""

    def __init__(
        self,
        hook: AsyncCacheHook,
        request: Request,
        start_live: Callable[[], AsyncLiveStream | Awaitable[AsyncLiveStream]],
        *,
        store: bool = True,
    ) -> None:
        self.hook = hook
        self._store = store
        self.request = request
        self._start_live = start_live
        self._live: AsyncLiveStream | None = None
        self._replay: AsyncReplay | None = None
        self._rec: Recorder | None = None
        self._result: StreamResult | None = None
        self._cancelled = False
        self._gen: AsyncGenerator[StreamEvent, None] | None = None
        self.role = "pending"

    @property
    def result(self) -> StreamResult:
        if self._result is None:
            raise ConfigError(NOT_ENDED, hint="iterate it to the end first")
        return self._result

    def cancel(self) -> None:
        self._cancelled = True
        if self._live is not None:
            self._live.cancel()
        if self._replay is not None:
            self._replay.cancel()

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()
        if self._result is None:
            if self._replay is not None:
                self._result = self._replay.core.finish(cancelled=True)
            elif self._rec is not None:
                self._result = _mark(self._rec.finish("cancelled", error=CancelledError("stopped")), "miss")
            elif self._live is not None:
                await self._live.aclose()
                try:
                    self._result = _mark(self._live.result, (self.role == "bypass" and "bypass") or "miss")
                except WorkbenchError:
                    pass

    async def __aenter__(self) -> AsyncCacheRun:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    async def _start(self) -> AsyncLiveStream:
        made = self._start_live()
        if isinstance(made, Awaitable):
            return await made
        return made

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        hook, cache, req = self.hook, self.hook.cache, self.request
        if cache.bypasses(req):
            cache.lookup(req, backend=hook.identity)
            self.role = "bypass"
            async for ev in self._live_path(kind="bypass", flight=None):
                yield ev
            return
        key = cache.key(req, backend=hook.identity)
        while True:
            t0 = time.perf_counter_ns()
            hit = cache.lookup(req, backend=hook.identity)
            if hit is not None:
                self.role = "hit"
                replay = self._replay = cache.areplay(
                    hit, req, backend=hook.backend, optimizations=hook.optimizations, sent_ns=t0
                )
                if self._cancelled:
                    replay.cancel()
                async for ev in replay:
                    yield ev
                self._result = replay.result
                if self._result.status == "cancelled":
                    raise _stopped(self._result)
                return
            if not self._store:  # complete(): answered live, nobody to share a flight with
                self.role = "live"
                async for ev in self._live_path(kind="miss", flight=None):
                    yield ev
                return
            leader, flight = hook.flights.join(key)
            if leader:
                self.role = "leader"
                try:
                    async for ev in self._live_path(kind="miss", flight=flight):
                        yield ev
                finally:
                    hook.flights.leave(key, flight)
                return
            self.role = "follower"
            try:
                async for ev in self._follow(flight):
                    yield ev
                return
            except FlightCancelled as exc:
                if exc.received or self._cancelled:
                    rec = self._rec
                    partial = None if rec is None else _mark(rec.finish("cancelled", error=exc), "miss")
                    self._result = partial
                    raise CancelledError(
                        "the shared upstream stream was cancelled by the request that started it",
                        hint="retry the request",
                        result=partial,
                    ) from None
                self._rec = None

    async def _live_path(
        self, *, kind: str, flight: AsyncFlight[StreamEvent] | None
    ) -> AsyncIterator[StreamEvent]:
        hook = self.hook
        done_seen = False
        live = self._live = await self._start()
        if self._cancelled:
            live.cancel()
        try:
            async for ev in live:
                if isinstance(ev, DoneEvent):
                    done_seen = True
                if flight is not None:
                    await flight.publish(ev)
                yield ev
        except GeneratorExit:
            if flight is not None:
                await flight.fail(FlightCancelled(0), cancelled=True)
            raise
        except WorkbenchError as exc:
            self._result = _mark(exc.result, kind)
            if flight is not None:
                await flight.fail(exc, cancelled=isinstance(exc, CancelledError))
            raise
        except BaseException as exc:
            if flight is not None:
                await flight.fail(exc)
            raise
        result = live.result
        self._result = _mark(result, kind)
        if kind == "miss" and result.ok and self._store:
            hook.store(self.request, result, done_seen=done_seen)
        if flight is not None:
            if result.ok:
                await flight.finish(result)
            else:
                await flight.fail(FlightCancelled(0), cancelled=True)

    async def _follow(self, flight: AsyncFlight[StreamEvent]) -> AsyncIterator[StreamEvent]:
        rec = self._rec = self.hook.follower_recorder(self.request)
        try:
            async for ev in flight.follow(idle_timeout=self.hook.idle_timeout):
                if self._cancelled:
                    break
                _stamp(rec, ev)
                yield ev
        except WorkbenchError as exc:
            partial = _mark(rec.finish("error", error=exc), "miss")
            exc.result = partial
            self._result = partial
            raise
        if self._cancelled:
            stopped = rec.finish("cancelled", error=CancelledError("stopped"))
            self._result = _mark(stopped, "miss")
            raise _stopped(stopped)
        _adopt(rec, flight.result)
        self._result = _mark(rec.finish("ok"), "miss")
