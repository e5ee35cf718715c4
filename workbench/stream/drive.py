"""The two drivers of the engine: `Stream` (sync) and `AsyncStream`. Thin: they wait, the engine decides.

Both run the same loop: ask the engine whether something must end the stream (`check`), read one chunk
from the source, stamp it, hand it to the engine, publish what came out. They differ only in how a read
waits and how a passed deadline or an early cancel interrupts it:

* sync: the network source's sockets wake every few ms to call `watching.get().interruption(now)`
  (`workbench.client._httpcore_adapter`); a replay or follower read is short or has its own limit;
* async: every await runs under an `asyncio.timeout` with no timer of its own; one watchdog timer per
  stream, armed for the stream's next deadline, reschedules that timeout to now when a limit has really
  passed (it re-arms itself when the idle deadline moved on as events arrived). So a read costs no timer
  churn on the event loop, which matters with many concurrent streams; `cancel()` ends the read the same way.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from workbench._exceptions import ConfigError, WorkbenchError
from workbench._types import ProtocolName, Request, StreamEvent, StreamResult
from workbench.stream.engine import StreamEngine
from workbench.stream.sources import EngineSpec, Gate, Observer, Plan, Restart, Role

__all__ = ["AsyncStream", "Interrupted", "Starter", "Stream", "watching"]

T = TypeVar("T")

# The engine whose network read is in progress on this thread (or task): the sync network adapter asks
# it, between short socket waits, whether a deadline passed or an early cancel wants the read abandoned.
watching: ContextVar[StreamEngine | None] = ContextVar("workbench_stream_watch", default=None)


class Interrupted(Exception):
    """Raised inside a read to abandon it (a deadline passed, or an early cancel): `Interrupted(error)`."""

    @property
    def error(self) -> WorkbenchError:
        """The WorkbenchError that ends the stream."""
        err = self.args[0]
        assert isinstance(err, WorkbenchError)
        return err


@dataclass(slots=True)
class Starter:
    """Turns a request into (engine, source, observer): the gate's plan, or live over the network.

    `live()` makes the network source (sync or async, as the driver needs); the gate (a response cache)
    may instead hand back a replay or a follower source, or an observer for the live stream. `fixed`: a
    plan decided beforehand (a replay driven on its own).
    """

    request: Request
    spec: EngineSpec
    live: Any
    gate: Gate | None = None
    streaming: bool = True
    fixed: Plan | None = None

    def plan(self) -> Plan:
        if self.fixed is not None:
            return self.fixed
        if self.gate is None:
            return Plan("live")
        # a non-streamed answer has no chunk boundaries to replay: looked up, never stored
        return self.gate.plan(self.request, store=self.streaming)

    def protocol(self, plan: Plan) -> ProtocolName | None:
        """The protocol when it is known without asking the server, else None (the driver detects)."""
        return plan.protocol or self.spec.protocol

    def build(self, plan: Plan, protocol: ProtocolName) -> tuple[StreamEngine, Any, Observer | None]:
        # a replay or a follower hands over parsed events: there is no body to parse, streamed or not
        streaming = self.streaming or plan.local
        engine = self.spec.engine(self.request, protocol, streaming=streaming, local=plan.local)
        engine.cache_kind = plan.kind
        source = plan.source if plan.source is not None else self.live()
        return engine, source, plan.observer


class _Base:
    """What both drivers share: the queue of events to hand out, the result, cancel."""

    def __init__(self, request: Request, starter: Starter) -> None:
        self.request = request
        self.starter = starter
        self.engine: StreamEngine | None = None
        self._source: Any = None
        self._observer: Observer | None = None
        self._opened = False
        self._pending: deque[StreamEvent] = deque()
        self._ended = False
        self._cancel_requested = False
        self._end_t = 0
        self.role: Role = "pending"

    def __repr__(self) -> str:
        state = "ended" if self._ended else ("open" if self._opened else "new")
        return f"<{type(self).__name__} {self.request.id} {self.role} {state}>"

    @property
    def result(self) -> StreamResult:
        if self.engine is None or self.engine.result is None:
            raise ConfigError(
                "the stream has not ended yet", hint="iterate it to the end (or use client.run) first"
            )
        return self.engine.result

    def cancel(self) -> None:
        """Stop the stream; safe from any thread. With `early_cancel` the connection is closed at once;
        without it the rest is read to the end and counted as waste. Iterating then raises CancelledError."""
        self._cancel_requested = True
        engine = self.engine
        if engine is not None:
            engine.cancel()

    def _planned(self) -> tuple[Plan, ProtocolName | None]:
        """The plan, and the protocol when known without asking the server (else the driver detects)."""
        try:
            plan = self.starter.plan()
            return plan, self.starter.protocol(plan)
        except BaseException:
            self._ended = True
            raise

    def _must_open(self, engine: StreamEngine) -> bool:
        """True once, when the source is to be opened now (a stop before that ends the stream instead)."""
        if self._opened:
            return False
        if engine.cancelled:
            raise engine.cancelled_error()
        self._opened = True
        engine.sent()  # before the open: deadlines run from it (a source may stamp again, later or earlier)
        return True

    def _took(self, engine: StreamEngine, chunk: bytes | list[StreamEvent] | None, t: int) -> bool:
        """Hand one read to the engine. True at the end of the body when the stream may end now: the driver
        then closes the source and calls `_ended_ok`."""
        if chunk is None:
            self._end_t = t
            self._ended = self._eof_events(engine, t)
            return self._ended
        self._handle(engine, chunk, t)
        err = engine.interruption(t)
        if err is not None:
            raise err
        return False

    def _closing(self) -> bool:
        """`close()`: True when an unfinished stream is to be stopped and drained."""
        if self._ended or self.engine is None:
            self._ended = True
            return False
        self.cancel()
        return True

    def _adopt(self, plan: Plan, built: tuple[StreamEngine, Any, Observer | None]) -> StreamEngine:
        self.role = plan.role
        self.engine, self._source, self._observer = built
        self._opened = False
        if self._cancel_requested:
            self.engine.cancel()
        return self.engine

    def _emit(self, events: list[StreamEvent]) -> None:
        if events:
            if self._observer is not None:
                self._observer.events(events)
            self._pending.extend(events)

    def _handle(self, engine: StreamEngine, chunk: bytes | list[StreamEvent], t: int) -> None:
        self._emit(engine.on_data(chunk, t) if isinstance(chunk, bytes) else engine.on_events(chunk, t))

    def _eof_events(self, engine: StreamEngine, t: int) -> bool:
        """True when the stream may end now (no events or held-back error left to hand out first)."""
        self._emit(engine.on_eof(t))
        if engine.pending_error is not None and self._pending:
            return False  # hand out the events first; the next step raises the error
        return True

    def _ended_ok(self, engine: StreamEngine) -> None:
        """After the source closed: finish, tell the observer, raise a stop or a held-back error."""
        err = engine.end(self._end_t)
        if err is not None:
            raise err
        if self._observer is not None:
            assert engine.result is not None
            self._observer.ended(engine.result)

    def _failure(self, engine: StreamEngine, exc: BaseException, t: int) -> WorkbenchError:
        if isinstance(exc, Interrupted):
            exc = exc.error
        elif isinstance(exc, builtins.TimeoutError) and not isinstance(exc, WorkbenchError):
            exc = engine.interruption(t) or exc
        err = engine.fail(exc, t)
        if self._observer is not None:
            self._observer.failed(err)
        return err


class Stream(_Base):
    """One request's events. Iterate it (TextDelta, and ReasoningDelta / ToolCallDelta / ChoiceDelta when the
    server sends reasoning, tool calls or several choices; UsageEvent, DoneEvent); `.result` once it ended.
    Iterating a cancelled stream raises CancelledError carrying `.result`. Use as a context manager."""

    def __iter__(self) -> Iterator[StreamEvent]:
        # `for ev in stream` gets a generator: one resume per event instead of a Python-level __next__
        # call, a large share of the per-chunk cost on a fast stream. Events leave the queue as they are
        # handed out, so a loop left early, `next(stream)` and a second loop continue from the same place.
        pending = self._pending
        while pending or not self._ended:
            if not pending:
                self._step()
                if not pending:
                    return
            yield pending.popleft()

    def __next__(self) -> StreamEvent:
        if not self._pending and not self._ended:
            self._step()
        if self._pending:
            return self._pending.popleft()
        raise StopIteration

    def _start(self) -> StreamEngine:
        plan, protocol = self._planned()
        if protocol is None:
            detect = self.starter.spec.detect
            assert detect is not None
            try:
                protocol = detect()
            except BaseException:
                self._ended = True
                raise
        return self._adopt(plan, self.starter.build(plan, protocol))

    def _step(self) -> None:
        """Read until there are events to hand out or the stream ended (result set, source closed)."""
        engine = self.engine if self.engine is not None else self._start()
        token = watching.set(engine)
        try:
            source = self._source
            if self._must_open(engine):
                source.open(engine)
            while not self._pending and not self._ended:
                engine.raise_held()
                # stamp first (the argument is evaluated as the read returns), parse after
                if self._took(engine, source.read(), time.perf_counter_ns()):
                    self._close_source()
                    self._ended_ok(engine)
        except Restart:
            self._close_source()
            self.engine = None  # plan again: the next step starts afresh
            self._step()
        except BaseException as exc:
            self._fail(engine, exc)
        finally:
            watching.reset(token)

    def _fail(self, engine: StreamEngine, exc: BaseException) -> None:
        self._ended = True
        self._pending.clear()
        self._close_source()
        t = time.perf_counter_ns()  # after the close: wasted_ms_after_stop runs until the connection is gone
        if not isinstance(exc, Exception):
            # KeyboardInterrupt and friends: keep what we have as a cancelled result, then let it through
            engine.cancel()
            self._failure(engine, engine.cancelled_error(), t)
            raise exc
        err = self._failure(engine, exc, t)
        if err is exc:
            raise err
        raise err from None

    def _close_source(self) -> None:
        source = self._source
        if source is not None and self._opened:
            try:
                source.close()
            except (OSError, WorkbenchError, Interrupted):
                pass

    def close(self) -> None:
        """End the stream. An unfinished stream counts as cancelled (read to the end without early_cancel)."""
        if self._closing():
            with contextlib.suppress(WorkbenchError):
                while not self._ended:
                    self._pending.clear()
                    self._step()

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncStream(_Base):
    """The asyncio driver: `async for ev in stream`; `.result` once it ended; `cancel()` from any task or
    thread."""

    _loop: asyncio.AbstractEventLoop | None = None
    _timeout: asyncio.Timeout | None = None
    _watchdog: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        self._cancel_requested = True
        engine = self.engine
        if engine is None or not engine.cancel() or not engine.early_cancel:
            return
        loop = self._loop
        if loop is None:
            return
        try:
            same_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            self._interrupt_now()
        else:
            loop.call_soon_threadsafe(self._interrupt_now)

    # -- the watchdog --

    def _interrupt_now(self) -> None:
        cm, loop = self._timeout, self._loop
        if cm is None or loop is None:
            return
        try:
            cm.reschedule(loop.time())
        except RuntimeError:
            pass  # the read just finished; the loop checks the cancel flag before the next one

    def _arm(self, engine: StreamEngine, now_ns: int) -> None:
        """Make sure the watchdog fires no later than the stream's next deadline (if it has one)."""
        left = engine.seconds_left(now_ns)
        if left is None:
            return
        loop = self._loop
        assert loop is not None
        when = loop.time() + left + 0.001
        dog = self._watchdog
        if dog is not None:
            if dog.when() <= when:
                return  # it fires first and re-arms for whatever the deadline is then
            dog.cancel()  # the deadline moved earlier (the idle limit starts with the first byte)
        self._watchdog = loop.call_at(when, self._on_watchdog, engine)

    def _on_watchdog(self, engine: StreamEngine) -> None:
        self._watchdog = None
        if engine.result is not None:
            return
        now = time.perf_counter_ns()
        if engine.interruption(now) is not None:
            self._interrupt_now()  # between reads, the next check finds the passed deadline itself
        else:
            self._arm(engine, now)

    def _disarm(self) -> None:
        dog, self._watchdog = self._watchdog, None
        if dog is not None:
            dog.cancel()

    async def _guard(self, engine: StreamEngine, aw: Awaitable[T]) -> T:
        """Await one step of the source under the stream's deadlines (and early cancel)."""
        now = time.perf_counter_ns()
        err = engine.interruption(now)
        if err is not None:
            close = getattr(aw, "close", None)
            if close is not None:
                close()  # never awaited: close it so no "was never awaited" warning fires
            raise Interrupted(err)
        self._arm(engine, now)
        try:
            async with asyncio.timeout(None) as cm:
                self._timeout = cm
                try:
                    return await aw
                finally:
                    self._timeout = None
        except builtins.TimeoutError as exc:
            if isinstance(exc, WorkbenchError):
                raise
            err = engine.interruption(time.perf_counter_ns())
            if err is None:
                deadline = engine.deadline()
                err = engine.timeout_error(deadline[1] if deadline else "total")
            raise Interrupted(err) from None

    # -- iteration --

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        # an async generator: no new coroutine per event as `__anext__` makes
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamEvent]:
        # events leave the queue as they are handed out (no cleanup is needed when a loop is left
        # early, which an async generator would only run later, from the event loop)
        pending = self._pending
        popleft = pending.popleft
        while True:
            while pending:
                yield popleft()
            if self._ended:
                return
            await self._step()
            if not pending:
                return

    async def __anext__(self) -> StreamEvent:
        if not self._pending and not self._ended:
            await self._step()
        if self._pending:
            return self._pending.popleft()
        raise StopAsyncIteration

    async def _start(self) -> StreamEngine:
        plan, protocol = self._planned()
        self._loop = asyncio.get_running_loop()
        if protocol is None:
            assert self.starter.spec.adetect is not None
            try:
                protocol = await self.starter.spec.adetect()
            except BaseException:
                self._ended = True
                raise
        return self._adopt(plan, self.starter.build(plan, protocol))

    async def _step(self) -> None:
        engine = self.engine if self.engine is not None else await self._start()
        try:
            if self._must_open(engine):
                await self._guard(engine, self._source.aopen(engine))
            while not self._pending and not self._ended:
                engine.raise_held()
                chunk = await self._guard(engine, self._source.aread())
                if self._took(engine, chunk, time.perf_counter_ns()):  # stamp first, parse after
                    await self._close_source()
                    self._ended_ok(engine)
        except Restart:
            await self._close_source()
            self.engine = None  # plan again: the next step starts afresh
            await self._step()
        except BaseException as exc:
            await self._fail(engine, exc)

    async def _fail(self, engine: StreamEngine, exc: BaseException) -> None:
        self._ended = True
        self._pending.clear()
        if not isinstance(exc, Exception):
            # the caller's task was cancelled (or KeyboardInterrupt): keep a cancelled result, re-raise
            engine.cancel()
            self._failure(engine, engine.cancelled_error(), time.perf_counter_ns())
            await asyncio.shield(self._close_source())
            raise exc
        await self._close_source()
        t = time.perf_counter_ns()  # after the close: wasted_ms_after_stop runs until the connection is gone
        err = self._failure(engine, exc, t)
        if err is exc:
            raise err
        raise err from None

    async def _close_source(self) -> None:
        self._disarm()
        source = self._source
        if source is not None and self._opened:
            try:
                await source.aclose()
            except (OSError, WorkbenchError):
                pass

    async def aclose(self) -> None:
        """End the stream. An unfinished stream counts as cancelled (read to the end without early_cancel)."""
        if not self._closing():
            return
        with contextlib.suppress(WorkbenchError):
            while not self._ended:
                self._pending.clear()
                await self._step()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
