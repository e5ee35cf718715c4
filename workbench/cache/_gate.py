"""The cache's gate: for each request, where its events come from (`workbench.stream.Plan`).

* the policy says bypass (a sampled request) -> live, marked ``cache="bypass"``, never stored;
* a hit -> a `ReplaySource` of the stored chunks (``cache="exact"`` or ``"semantic"``);
* a miss -> single-flight on the request key: the first caller (leader) answers live, and its observer
  publishes every event to the flight and stores the answer when it completed with a `DoneEvent`;
  concurrent identical callers (followers) get a `FollowerSource` that hands them the leader's events as
  they arrive, measured by their own engine. All of them say ``cache="miss"``. Followers of a failed
  leader raise a copy of its error; of a cancelled one, they retry (`Restart`) if nothing was received yet.

The gate never imports the client: the client hands it requests and drives what it plans.
"""

from __future__ import annotations

import time

from workbench._exceptions import CancelledError
from workbench._types import DoneEvent, Request, StreamEvent, StreamResult, Timeouts
from workbench.cache.replay import ReplaySource
from workbench.cache.singleflight import Flight, FlightCancelled, SingleFlight, clone_error
from workbench.cache.tiers import ResponseCache
from workbench.stream import Plan, Restart, StreamEngine

__all__ = ["CacheGate", "FollowerSource", "follower_timeout"]

_WAIT: list[StreamEvent] = []  # a sentinel, compared by identity


def follower_timeout(t: Timeouts) -> float | None:
    """How long a follower waits for the next event. The leader's own timeouts normally end a stalled
    flight (and followers get that error); this only guards against a leader whose caller walked away
    without closing its stream, so it is the longest wait the leader itself could be allowed."""
    if t.total is not None:
        return t.total + 1.0
    if t.first_token is None or t.idle is None:
        return None  # the leader may legitimately wait for ever; so may its followers
    return max(t.first_token, t.idle) + 1.0


class CacheGate:
    """One per client: the cache, a single-flight registry, and the identity keys are made with."""

    def __init__(
        self,
        cache: ResponseCache,
        *,
        identity: str,
        follower_timeout: float | None = 60.0,
    ) -> None:
        self.cache = cache
        # what keys use (`workbench.cache.key.backend_identity`: normalised URL [+ credential hash])
        self.identity = identity
        self.follower_timeout = follower_timeout
        self.flights: SingleFlight[StreamEvent] = SingleFlight()

    def plan(self, request: Request, *, store: bool) -> Plan:
        """`store=False` (non-streamed `complete()`): hits are replayed, misses answered live, kept nowhere
        (one chunk has no boundaries to replay to streaming callers)."""
        cache, identity = self.cache, self.identity
        if cache.bypasses(request):
            cache.lookup(request, backend=identity)  # logged and counted as a bypass
            return Plan("bypass", kind="bypass")
        t0 = time.perf_counter_ns()
        hit = cache.lookup(request, backend=identity)
        if hit is not None:
            source = ReplaySource.from_hit(hit, timing=cache.replay_timing, sent_ns=t0)
            return Plan("hit", kind=hit.kind, source=source, protocol=hit.entry.protocol, local=True)
        if not store:
            return Plan("live", kind="miss")
        key = cache.key(request, backend=identity)
        leader, flight = self.flights.join(key)
        if leader:
            return Plan("leader", kind="miss", observer=_Leader(self, request, key, flight))
        return Plan("follower", kind="miss", source=FollowerSource(flight, self.follower_timeout), local=True)

    def store(self, request: Request, result: StreamResult, *, done_seen: bool) -> None:
        """Store a finished answer. Never raises: the stream succeeded and its answer is the caller's
        whatever the cache does (a failing tier is counted and warned by the cache)."""
        try:
            self.cache.store(request, result, backend=self.identity, done_seen=done_seen)
        except Exception as exc:
            self.cache.store_failed(exc)


class _Leader:
    """The observer of a leader's live stream: publishes to the flight, stores the answer, ends the flight."""

    def __init__(self, gate: CacheGate, request: Request, key: str, flight: Flight[StreamEvent]) -> None:
        self.gate, self.request, self.key, self.flight = gate, request, key, flight
        self.done_seen = False

    def events(self, events: list[StreamEvent]) -> None:
        flight = self.flight
        for ev in events:
            if isinstance(ev, DoneEvent):
                self.done_seen = True
            flight.publish(ev)

    def ended(self, result: StreamResult) -> None:
        try:
            if result.ok:
                # store before the flight ends, so a caller arriving after it finds the entry
                self.gate.store(self.request, result, done_seen=self.done_seen)
                self.flight.finish(result)
            else:
                self.flight.fail(FlightCancelled(0), cancelled=True)
        finally:
            self.gate.flights.leave(self.key, self.flight)

    def failed(self, error: BaseException) -> None:
        # a cancelled leader is not its followers' wish: they retry (or stop, if they got events already)
        self.flight.fail(error, cancelled=isinstance(error, CancelledError))
        self.gate.flights.leave(self.key, self.flight)


class FollowerSource:
    """The leader's events, as they arrive, for an identical request: a source with sync and async faces."""

    def __init__(self, flight: Flight[StreamEvent], idle_timeout: float | None) -> None:
        self.flight = flight
        self.idle_timeout = idle_timeout
        self._seen = 0
        self._engine: StreamEngine | None = None

    def open(self, engine: StreamEngine) -> None:
        self._engine = engine
        engine.sent()

    async def aopen(self, engine: StreamEngine) -> None:
        self.open(engine)

    def read(self) -> list[StreamEvent] | None:
        while True:
            got = self._take()
            if got is not _WAIT:
                return got
            self.flight.wait(self._seen, self.idle_timeout)

    async def aread(self) -> list[StreamEvent] | None:
        while True:
            got = self._take()
            if got is not _WAIT:
                return got
            await self.flight.await_(self._seen, self.idle_timeout)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def _take(self) -> list[StreamEvent] | None:
        """Events to hand over, None at the end, False when the caller must wait."""
        batch, ended = self.flight.take(self._seen)
        if batch:
            self._seen += len(batch)
            return batch
        if not ended:
            return _WAIT
        self._outcome()
        return None

    def _outcome(self) -> None:
        flight, engine = self.flight, self._engine
        assert engine is not None
        if flight.state == "error" and flight.error is not None:
            raise clone_error(flight.error)
        if flight.state == "cancelled":
            if self._seen == 0 and not engine.cancelled:
                raise Restart()  # nothing received: look up again, or lead the retry
            raise CancelledError(
                "the shared upstream stream was cancelled by the request that started it",
                hint="retry the request",
            )
        leader = flight.result
        if isinstance(leader, StreamResult):  # connection facts: the follower rode on the leader's response
            engine.rec.protocol = leader.protocol
            engine.rec.http_version = leader.http_version
