"""Single-flight: concurrent identical misses make ONE upstream call, and every caller gets the stream.

The first caller for a key becomes the *leader*: it makes the call and publishes each event into the
`Flight` as it arrives. Later callers for the same key, while the flight is open, are *followers*: they
read the flight's event list from the start and then block for new events, so they see each chunk when
the leader does (not only at the end), with the same chunk boundaries.

When the leader's call fails, every follower raises the same kind of error (a copy of the leader's
exception, so ``except IdleTimeout`` works the same for every caller; the copy's ``__cause__`` is the
leader's exception). When the leader was *cancelled* by its own caller, that is not the followers' wish:
followers that have not yet received an event retry (one becomes the new leader); followers that already
received events cannot un-receive them and raise `CancelledError`. A leader that walks away without
finishing (its stream garbage-collected) must call ``fail`` (the client does, from its close path);
followers also give up after ``idle_timeout`` seconds without an event.

The flight leaves the registry when it ends, so the next caller for the key does a fresh cache lookup,
which the leader has just filled (it stores before it finishes the flight).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, Literal, TypeVar

from workbench._exceptions import IdleTimeout
from workbench.cache.counters import Counters

__all__ = ["AsyncFlight", "AsyncSingleFlight", "Flight", "FlightCancelled", "SingleFlight", "clone_error"]

E = TypeVar("E")
State = Literal["running", "ok", "error", "cancelled"]


class FlightCancelled(Exception):
    """Raised to a follower when the leader was cancelled; `received` says whether it already got events."""

    def __init__(self, received: int) -> None:
        self.received = received
        super().__init__("the shared upstream stream was cancelled by the caller that started it")


def clone_error(exc: BaseException) -> BaseException:
    """A copy of `exc` (same class, message and attributes) for another caller to raise and annotate."""
    cls = type(exc)
    new = cls.__new__(cls)
    new.__dict__.update(getattr(exc, "__dict__", {}))
    new.args = exc.args
    new.__cause__ = exc
    return new


class _FlightBase(Generic[E]):
    def __init__(self) -> None:
        self.events: list[E] = []
        self.state: State = "running"
        self.error: BaseException | None = None
        self.result: object = None
        self.followers = 0

    def _ready(self, seen: int) -> Callable[[], bool]:
        """Predicate: an event past `seen` arrived, or the flight ended."""
        return lambda: seen < len(self.events) or self.state != "running"


class Flight(_FlightBase[E]):
    """One upstream call in progress (threads)."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()

    def publish(self, event: E) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def finish(self, result: object = None) -> None:
        with self._cond:
            if self.state == "running":
                self.state, self.result = "ok", result
            self._cond.notify_all()

    def fail(self, error: BaseException, *, cancelled: bool = False) -> None:
        with self._cond:
            if self.state == "running":
                self.state, self.error = ("cancelled" if cancelled else "error"), error
            self._cond.notify_all()

    def follow(self, *, idle_timeout: float | None = None) -> Iterator[E]:
        """Every event (past and future) until the flight ends; then raise if it failed."""
        i = 0
        while True:
            with self._cond:
                if i >= len(self.events) and self.state == "running":
                    if not self._cond.wait_for(self._ready(i), timeout=idle_timeout):
                        raise IdleTimeout(
                            f"no event from the shared upstream stream for {idle_timeout} s",
                            hint="the request that started it is stalled; retry or raise Timeouts.idle",
                        )
                batch = self.events[i:]
                state = self.state
            i += len(batch)
            yield from batch
            if state != "running" and i >= len(self.events):
                break
        _raise_outcome(self, i)


class AsyncFlight(_FlightBase[E]):
    """One upstream call in progress (one event loop)."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = asyncio.Condition()

    async def publish(self, event: E) -> None:
        async with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    async def finish(self, result: object = None) -> None:
        async with self._cond:
            if self.state == "running":
                self.state, self.result = "ok", result
            self._cond.notify_all()

    async def fail(self, error: BaseException, *, cancelled: bool = False) -> None:
        async with self._cond:
            if self.state == "running":
                self.state, self.error = ("cancelled" if cancelled else "error"), error
            self._cond.notify_all()

    async def follow(self, *, idle_timeout: float | None = None) -> AsyncIterator[E]:
        i = 0
        while True:
            async with self._cond:
                if i >= len(self.events) and self.state == "running":
                    try:
                        await asyncio.wait_for(
                            self._cond.wait_for(self._ready(i)),
                            idle_timeout,
                        )
                    except TimeoutError:
                        raise IdleTimeout(
                            f"no event from the shared upstream stream for {idle_timeout} s",
                            hint="the request that started it is stalled; retry or raise Timeouts.idle",
                        ) from None
                batch = self.events[i:]
                state = self.state
            i += len(batch)
            for ev in batch:  # an async generator has no `yield from`
                yield ev
            if state != "running" and i >= len(self.events):
                break
        _raise_outcome(self, i)


def _raise_outcome(flight: _FlightBase[E], received: int) -> None:
    if flight.state == "error" and flight.error is not None:
        raise clone_error(flight.error)
    if flight.state == "cancelled":
        raise FlightCancelled(received)


class SingleFlight(Generic[E]):
    """Registry of open flights by key (threads). Counts leaders and followers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, Flight[E]] = {}
        self.counters = Counters(("leaders", "followers"))

    def join(self, key: str) -> tuple[bool, Flight[E]]:
        """(True, new flight) for the leader, (False, the open flight) for a follower."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = Flight()
                leader = True
            else:
                flight.followers += 1
                leader = False
        self.counters.incr("leaders" if leader else "followers")
        return leader, flight

    def leave(self, key: str, flight: Flight[E]) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]

    def __len__(self) -> int:
        return len(self._flights)

    def stream(
        self, key: str, start: Callable[[], Iterator[E]], *, idle_timeout: float | None = None
    ) -> Iterator[E]:
        """`start()`'s events, with one `start()` per key at a time; the generic form of the client hook."""
        while True:
            leader, flight = self.join(key)
            if leader:
                try:
                    for ev in start():
                        flight.publish(ev)
                        yield ev
                except GeneratorExit:
                    flight.fail(FlightCancelled(0), cancelled=True)
                    raise
                except BaseException as exc:
                    flight.fail(exc)
                    raise
                else:
                    flight.finish()
                finally:
                    self.leave(key, flight)
                return
            received = 0
            try:
                for ev in flight.follow(idle_timeout=idle_timeout):
                    received += 1
                    yield ev
                return
            except FlightCancelled:
                if received:
                    raise
                # nothing seen yet: retry, possibly as the new leader


class AsyncSingleFlight(Generic[E]):
    """The asyncio twin of `SingleFlight` (one event loop; the registry itself needs no lock)."""

    def __init__(self) -> None:
        self._flights: dict[str, AsyncFlight[E]] = {}
        self.counters = Counters(("leaders", "followers"))

    def join(self, key: str) -> tuple[bool, AsyncFlight[E]]:
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = AsyncFlight()
            self.counters.incr("leaders")
            return True, flight
        flight.followers += 1
        self.counters.incr("followers")
        return False, flight

    def leave(self, key: str, flight: AsyncFlight[E]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def __len__(self) -> int:
        return len(self._flights)
