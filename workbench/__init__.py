"""workbench: measure and improve how LLM output is streamed, cached and shown.

Public API only; the modules behind it are private unless named here.
"""

from workbench._exceptions import (
    CacheError,
    CancelledError,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    FirstTokenTimeout,
    IdleTimeout,
    MalformedStreamError,
    NotFoundError,
    ServerStreamError,
    StatusError,
    StreamError,
    TimeoutError,
    TotalTimeout,
    TransportError,
    TruncatedStreamError,
    WorkbenchError,
)
from workbench._types import (
    Backend,
    ChunkRecord,
    DoneEvent,
    Message,
    Metrics,
    Request,
    StreamEvent,
    StreamResult,
    TextDelta,
    Timeouts,
    Usage,
    UsageEvent,
)
from workbench.client import AsyncClient, Client
from workbench.optimizations import Optimizations

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Backend",
    "CacheError",
    "CancelledError",
    "ChunkRecord",
    "Client",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "DoneEvent",
    "FirstTokenTimeout",
    "IdleTimeout",
    "MalformedStreamError",
    "Message",
    "Metrics",
    "NotFoundError",
    "Optimizations",
    "Request",
    "ServerStreamError",
    "StatusError",
    "StreamError",
    "StreamEvent",
    "StreamResult",
    "TextDelta",
    "TimeoutError",
    "Timeouts",
    "TotalTimeout",
    "TransportError",
    "TruncatedStreamError",
    "Usage",
    "UsageEvent",
    "WorkbenchError",
    "__version__",
]
