"""The stream engine and its drivers: one request's events from a source (network, replay, follower).

`StreamEngine` is the sans-I/O state machine (bytes or events in, `StreamEvent`s and decisions out);
`Stream` / `AsyncStream` drive it over a source; `Starter` picks the source (live, or a gate's plan).
Neither the client nor the cache is imported here: both import this.
"""

from workbench.stream.drive import AsyncStream, Interrupted, Starter, Stream, watching
from workbench.stream.engine import StreamEngine
from workbench.stream.sources import (
    AsyncSource,
    Chunk,
    EngineSpec,
    Gate,
    Observer,
    Plan,
    Restart,
    Role,
    Source,
)

__all__ = [
    "AsyncSource",
    "AsyncStream",
    "Chunk",
    "EngineSpec",
    "Gate",
    "Interrupted",
    "Observer",
    "Plan",
    "Restart",
    "Role",
    "Source",
    "Starter",
    "Stream",
    "StreamEngine",
    "watching",
]
