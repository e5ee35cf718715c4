"""Where a request's events come from, and how a driver learns which source to use.

A *source* feeds the engine. Three implementations exist: the network exchange (`workbench.client`), a
cache replay and a single-flight follower (`workbench.cache`). Each has a sync and an async face:
`open(engine)` / `aopen(engine)` (send the request, or start; stamps `engine.sent(...)`),
`read()` / `aread()` (the next bytes, the next parsed events, or None at the end of the body) and
`close()` / `aclose()`. A source maps its own failures into the workbench exception tree.

A *gate* (the response cache, `workbench.cache.CacheGate`) decides per request which source to use, as a
`Plan`: answer live, replay a hit, or follow an identical request already in flight; a live answer may
come with an *observer* (the single-flight leader: publishes every event, stores the answer at the end).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from workbench._types import CacheKind, ProtocolName, Request, StreamEvent, StreamResult, Timeouts
from workbench.protocols import DEFAULT_MAX_EVENT_BYTES
from workbench.stream.engine import StreamEngine

__all__ = [
    "AsyncSource",
    "Chunk",
    "EngineSpec",
    "Gate",
    "Observer",
    "Plan",
    "Restart",
    "Role",
    "Source",
]

Chunk = bytes | list[StreamEvent]
Role = Literal["pending", "live", "bypass", "hit", "leader", "follower"]


class Source(Protocol):
    def open(self, engine: StreamEngine) -> None: ...

    def read(self) -> Chunk | None: ...

    def close(self) -> None: ...


class AsyncSource(Protocol):
    async def aopen(self, engine: StreamEngine) -> None: ...

    async def aread(self) -> Chunk | None: ...

    async def aclose(self) -> None: ...


class Observer(Protocol):
    """Sees a live stream's events and its end (the single-flight leader). Never raises into the stream."""

    def events(self, events: list[StreamEvent]) -> None: ...

    def ended(self, result: StreamResult) -> None: ...

    def failed(self, error: BaseException) -> None: ...


class Restart(Exception):
    """Raised by a source before it handed out anything: plan the request again (a follower whose leader
    was cancelled by its own caller retries, possibly as the new leader)."""


@dataclass(slots=True)
class Plan:
    """A gate's decision for one request. `source` None means: answer live over the network."""

    role: Role
    kind: CacheKind = "off"  # the result's `cache` column
    source: Any = None  # a Source and/or AsyncSource (replay, follower)
    protocol: ProtocolName | None = None  # known without asking the server (a replayed entry's)
    observer: Observer | None = None
    # replays and followers hold no connection: a stop needs no reading to the end, and the flight's own
    # idle limit (not the client's deadlines) bounds a follower
    local: bool = False


class Gate(Protocol):
    def plan(self, request: Request, *, store: bool) -> Plan: ...


@dataclass(slots=True)
class EngineSpec:
    """What every engine of one client shares: labels, toggles, deadlines, how to learn the protocol."""

    backend: str
    url: str
    protocol: ProtocolName | None = None
    optimizations: Mapping[str, Any] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    early_cancel: bool = False
    fast_parse: bool = False
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    detect: Callable[[], ProtocolName] | None = None
    adetect: Callable[[], Awaitable[ProtocolName]] | None = None

    def engine(
        self, request: Request, protocol: ProtocolName, *, streaming: bool = True, local: bool = False
    ) -> StreamEngine:
        return StreamEngine(
            request,
            backend=self.backend,
            url=self.url,
            protocol=protocol,
            optimizations=self.optimizations,
            timeouts=Timeouts(None, None, None, None) if local else self.timeouts,
            streaming=streaming,
            early_cancel=True if local else self.early_cancel,
            fast_parse=self.fast_parse,
            max_event_bytes=self.max_event_bytes,
        )
