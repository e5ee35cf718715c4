"""One exception tree. httpx and protocol errors are mapped into it at one boundary (the client).

Every error says what happened and what to do, and carries the partial `StreamResult` when a stream had
started, so no received text is lost.

    WorkbenchError
    ├── ConfigError                 bad input from the user (URL, options, request)
    ├── TransportError              could not talk to the server at all
    │   └── ConnectError            server unreachable / refused / TLS failure
    ├── StatusError                 the server answered with an HTTP error (status_code, url, server_message,
    │                               body_excerpt, retry_after_s); built by `http_status_error`, which names
    │                               the likely cause when the body says nothing
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
import email.utils
import re
import time
from http import HTTPStatus
from typing import TYPE_CHECKING

from workbench._secrets import redact_url

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
    "http_status_error",
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
    """The server answered with an HTTP error. `url` never carries credentials; `body_excerpt` is bounded;
    `retry_after_s` is the server's Retry-After (seconds) when it sent one (429, 503)."""

    default_hint = "read the server's message above"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        server_message: str = "",
        url: str = "",
        body_excerpt: str = "",
        retry_after_s: float | None = None,
        hint: str | None = None,
        result: StreamResult | None = None,
    ) -> None:
        super().__init__(message, hint=hint, result=result)
        self.status_code = status_code
        self.server_message = server_message
        self.url = url
        self.body_excerpt = body_excerpt
        self.retry_after_s = retry_after_s


class NotFoundError(StatusError):
    default_hint = "check the model name (list them with /api/tags or /v1/models) and the protocol"


# ---- building a StatusError that says why ----

EXCERPT_CHARS = 300  # what of an error body a message quotes: enough for a server's sentence, not a page

# Words that carry no explanation: a body made only of these (after the status's own reason phrase and any
# HTML tags are taken out) says nothing the status code did not, so the hint must name the likely cause.
_FILLER = frozenset(
    "error errors http status code the request response server nginx apache html head body title center hr "
    "null none true false detail message an a of".split()
)

# status -> (what most likely happened, what to check). The CLI flag names are the ones `workbench bench`
# and friends take; a library user finds the same fields on Backend / Request.
_CAUSES: dict[int, tuple[str, str]] = {
    400: (
        "the server rejected the request",
        "check --model (a name the server lists) and --protocol, and any header or body field you added",
    ),
    401: (
        "the server wants credentials",
        "check the API key (--api-key, $WORKBENCH_API_KEY or $OPENAI_API_KEY)",
    ),
    403: (
        "the server refused these credentials",
        "check the API key (--api-key, $WORKBENCH_API_KEY or $OPENAI_API_KEY) and its access to this model",
    ),
    404: (
        "the server has no such path or model",
        "check the URL (the server root, http://host:port, not an endpoint path), --model and --protocol",
    ),
    405: (
        "the server does not take this method on this path",
        "check --protocol (openai or ollama) and the URL path",
    ),
    408: ("the server timed out reading the request", "retry; check the network between you and the server"),
    413: ("the request body is too large for the server", "shorten the prompts or lower --max-tokens"),
    415: (
        "the server does not accept this body's content type",
        "check --protocol (openai or ollama): the server expects another body shape",
    ),
    422: (
        "the server could not read the request body",
        "check --protocol (openai or ollama) and --model: the body shape or a field is not what it expects",
    ),
    429: (
        "the server is rate limiting this client",
        "send fewer requests (--arrival rate=..., lower concurrency) or raise the server's limits",
    ),
}


def _cause(status: int) -> tuple[str, str]:
    if status in _CAUSES:
        return _CAUSES[status]
    if status in (502, 503, 504):
        return (
            "the server or a proxy in front of it is unavailable or overloaded",
            "check the server's logs; it may still be loading the model; retry later",
        )
    if status >= 500:
        return ("the server failed on its side", "check the server's logs; the request may be fine")
    return ("the server rejected the request", "read the server's message; check --model and --protocol")


def _uninformative(text: str, status: int) -> bool:
    """True when `text` says nothing beyond the status line (empty, `Bad Request`, an nginx error page)."""
    try:
        reason = set(HTTPStatus(status).phrase.lower().split())
    except ValueError:
        reason = set()
    words = re.findall(r"[a-z]+", re.sub(r"<[^>]*>", " ", text.lower()))
    return all(w in reason or w in _FILLER for w in words)


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (delay seconds or an HTTP date) as seconds from now; None if absent/unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def http_status_error(
    status: int,
    *,
    method: str,
    url: str,
    body_text: str,
    server_message: str,
    location: str | None = None,
    retry_after: str | None = None,
) -> StatusError:
    """The StatusError for an HTTP error answer: status, URL, a bounded body excerpt and a hint that names
    the most likely cause, which matters most when the body is empty or only restates the status."""
    url = redact_url(url)
    excerpt = body_text.strip()[:EXCERPT_CHARS]
    wait = retry_after_seconds(retry_after)
    head = f"{method} {url} returned HTTP {status}"
    cls: type[StatusError] = StatusError
    if status < 400:
        message = f"{head}: {server_message or '(empty body)'}"
        hint = f"the server redirects to {location}; use that URL as the backend URL"
    else:
        what, hint = _cause(status)
        if wait is not None:
            hint += f"; the server asks to retry after {wait:.0f} s"
        if not excerpt:
            message = f"{head} with an empty body: {what}"
        elif _uninformative(server_message or excerpt, status):
            message = f"{head} with no explanation (body: {excerpt[:120]!r}): {what}"
        else:
            message = f"{head}: {server_message or excerpt}"
        if status == 404:
            cls = NotFoundError
    return cls(
        message,
        status_code=status,
        server_message=server_message,
        url=url,
        body_excerpt=excerpt,
        retry_after_s=wait,
        hint=hint,
    )


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
