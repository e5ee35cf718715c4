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
import builtins
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, Literal, TypeVar

from workbench._exceptions import IdleTimeout
from workbench.cache.counters import Counters

__all__ = ["Flight", "FlightCancelled", "SingleFlight", "clone_error"]

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


class Flight(Generic[E]):
    """One upstream call in progress. The leader publishes (never blocks); followers wait, on a thread
    (`follow`) or in an event loop (`afollow`): one flight serves both, so the sync and async clients
    share one registry and one set of rules."""

    def __init__(self) -> None:
        self.events: list[E] = []
        self.state: State = "running"
        self.error: BaseException | None = None
        self.result: object = None
        self.followers = 0
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def _changed(self) -> None:
        # under self._cond: wake thread followers, and the futures async followers wait on (from any thread)
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    def publish(self, event: E) -> None:
        with self._cond:
            self.events.append(event)
            self._changed()

    def finish(self, result: object = None) -> None:
        with self._cond:
            if self.state == "running":
                self.state, self.result = "ok", result
            self._changed()

    def fail(self, error: BaseException, *, cancelled: bool = False) -> None:
        with self._cond:
            if self.state == "running":
                self.state, self.error = ("cancelled" if cancelled else "error"), error
            self._changed()

    def take(self, seen: int) -> tuple[list[E], bool]:
        """(events past `seen`, whether the flight ended and nothing more will come)."""
        with self._cond:
            batch = self.events[seen:]
            return batch, self.state != "running"

    def wait(self, seen: int, timeout: float | None) -> None:
        """Block until an event past `seen` arrives or the flight ends; IdleTimeout after `timeout` s."""
        with self._cond:
            if not self._cond.wait_for(self._ready(seen), timeout=timeout):
                raise _idle(timeout)

    async def await_(self, seen: int, timeout: float | None) -> None:
        """The event-loop form of `wait`."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if self._ready(seen)():
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except builtins.TimeoutError:
            raise _idle(timeout) from None

    def _ready(self, seen: int) -> Callable[[], bool]:
        """Predicate: an event past `seen` arrived, or the flight ended."""
        return lambda: seen < len(self.events) or self.state != "running"

    def follow(self, *, idle_timeout: float | None = None) -> Iterator[E]:
        """Every event (past and future) until the flight ends; then raise if it failed."""
        i = 0
        while True:
            batch, ended = self.take(i)
            if not batch and not ended:
                self.wait(i, idle_timeout)
                continue
            i += len(batch)
            yield from batch
            if ended:
                break
        _raise_outcome(self, i)

    async def afollow(self, *, idle_timeout: float | None = None) -> AsyncIterator[E]:
        i = 0
        while True:
            batch, ended = self.take(i)
            if not batch and not ended:
                await self.await_(i, idle_timeout)
                continue
            i += len(batch)
            for ev in batch:  # an async generator has no `yield from`
                yield ev
            if ended:
                break
        _raise_outcome(self, i)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _idle(timeout: float | None) -> IdleTimeout:
    return IdleTimeout(
        f"no event from the shared upstream stream for {timeout} s",
        hint="the request that started it is stalled; retry or raise Timeouts.idle",
    )


def _raise_outcome(flight: Flight[E], received: int) -> None:
    if flight.state == "error" and flight.error is not None:
        raise clone_error(flight.error)
    if flight.state == "cancelled":
        raise FlightCancelled(received)


class SingleFlight(Generic[E]):
    """Registry of open flights by key, for threads and event loops alike. Counts leaders and followers."""

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
