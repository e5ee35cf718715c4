"""One exception tree. httpx and protocol errors are mapped into it at one boundary (the client).

Every error says what happened and what to do, and carries the partial `StreamResult` when a stream had
started, so no received text is lost.

    WorkbenchError
    ├── ConfigError                 bad input from the user (URL, options, request)
    ├── TransportError              could not talk to the server at all
    │   └── ConnectError            server unreachable / refused / TLS failure
    ├── StatusError                 the server answered with an HTTP error (status_code, server_message)
    │   └── NotFoundError           404: unknown model or wrong URL/protocol
    ├── StreamError                 the stream broke after it started
    │   ├── MalformedStreamError    a chunk could not be parsed
    │   ├── TruncatedStreamError    the connection ended before the protocol's end marker
    │   └── ServerStreamError       the server sent an error object mid-stream
    ├── TimeoutError                (also a builtins.TimeoutError)
    │   ├── ConnectTimeout
    │   ├── FirstTokenTimeout
    │   ├── IdleTimeout
    │   └── TotalTimeout
    ├── CancelledError              the user stopped the stream
    └── CacheError                  a cache tier failed in a way the user must see
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench._types import StreamResult

__all__ = [
    "CacheError",
    "CancelledError",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "FirstTokenTimeout",
    "IdleTimeout",
    "MalformedStreamError",
    "NotFoundError",
    "ServerStreamError",
    "StatusError",
    "StreamError",
    "TimeoutError",
    "TotalTimeout",
    "TransportError",
    "TruncatedStreamError",
    "WorkbenchError",
]


class WorkbenchError(Exception):
    """Base of every error the workbench raises. `hint` says what to do; `result` keeps partial output."""

    default_hint = ""

    def __init__(self, message: str, *, hint: str | None = None, result: StreamResult | None = None) -> None:
        self.message = message
        self.hint = self.default_hint if hint is None else hint
        self.result = result
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    @property
    def kind(self) -> str:
        """Short stable name used in frames and widgets, e.g. 'IdleTimeout'."""
        return type(self).__name__


class ConfigError(WorkbenchError, ValueError):
    default_hint = "check the arguments you passed"


class TransportError(WorkbenchError):
    default_hint = "check that the server is running and the URL is right"


class ConnectError(TransportError):
    pass


class StatusError(WorkbenchError):
    default_hint = "read the server's message above"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        server_message: str = "",
        hint: str | None = None,
        result: StreamResult | None = None,
    ) -> None:
        self.status_code = status_code
        self.server_message = server_message
        super().__init__(message, hint=hint, result=result)


class NotFoundError(StatusError):
    default_hint = "check the model name (list them with /api/tags or /v1/models) and the protocol"


class StreamError(WorkbenchError):
    default_hint = "the partial text is kept on .result; retry, or check the server's logs"


class MalformedStreamError(StreamError):
    pass


class TruncatedStreamError(StreamError):
    pass


class ServerStreamError(StreamError):
    pass


class TimeoutError(WorkbenchError, builtins.TimeoutError):
    default_hint = "raise the matching field of Timeouts, or check that the server is not overloaded"


class ConnectTimeout(TimeoutError):
    pass


class FirstTokenTimeout(TimeoutError):
    pass


class IdleTimeout(TimeoutError):
    pass


class TotalTimeout(TimeoutError):
    pass


class CancelledError(WorkbenchError):
    default_hint = "the stream was stopped on request; the partial text is kept on .result"


class CacheError(WorkbenchError):
    default_hint = "the cache tier failed; the request can be retried without it"
