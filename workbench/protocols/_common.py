"""Pieces both protocols share: the parser interface, parsed non-streaming replies, error-body reading."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from workbench import _types as ev
from workbench._exceptions import MalformedStreamError, StreamError, TruncatedStreamError
from workbench._types import Choice, Request, StreamEvent, ToolCall, Usage

__all__ = [
    "Completion",
    "Parser",
    "ParserState",
    "PreparedRequest",
    "arguments_text",
    "error_text",
    "malformed",
    "parse_error_body",
    "request_body",
    "sampling",
    "snippet",
]

SNIPPET_BYTES = 120


class Parser(Protocol):
    """Sans-I/O stream parser: bytes in (with their arrival stamp), events out.

    `flush()` parses whatever complete data is still buffered at end of body without judging the ending;
    `close()` does the same and raises TruncatedStreamError if the protocol's end marker never came.
    """

    @property
    def done(self) -> bool: ...

    @property
    def error(self) -> StreamError | None:
        """An error found after other events of the same read; raise it once those are handled."""
        ...

    def feed(self, data: bytes, t_ns: int) -> list[StreamEvent]: ...

    def flush(self, t_ns: int = 0) -> list[StreamEvent]: ...

    def close(self, t_ns: int = 0) -> list[StreamEvent]: ...


class ParserState(ABC):
    """The end-of-stream flag, error stashing and `close()` both protocols' parsers share.

    An error found after other events in the same read is stashed and raised on the next call, so the
    events before it are not lost; the client checks `.error` after each feed to raise it at once.
    """

    __slots__ = ("_done", "_error")
    # the TruncatedStreamError message when the body ends before the protocol's end marker
    _ENDED_EARLY: ClassVar[str]

    def __init__(self) -> None:
        self._done = False
        self._error: StreamError | None = None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def error(self) -> StreamError | None:
        return self._error

    def _fail(self, exc: StreamError, events: list[StreamEvent]) -> list[StreamEvent]:
        self._error = exc
        if events:
            return events
        raise exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    @abstractmethod
    def flush(self, t_ns: int = 0) -> list[StreamEvent]: ...

    def close(self, t_ns: int = 0) -> list[StreamEvent]:
        events = self.flush(t_ns)
        self._check()
        if not self._done:
            raise TruncatedStreamError(self._ENDED_EARLY)
        return events


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """What to send: method, path below the backend's base URL, and a JSON body (not yet encoded)."""

    method: str
    path: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Completion:
    """A parsed non-streaming reply: choice 0's fields, and every choice in `choices` if there are several."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    server: Mapping[str, Any] = field(default_factory=dict)
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    choices: tuple[Choice, ...] = ()

    def events(self, t_ns: int) -> list[StreamEvent]:
        """The reply as the one-chunk stream a client records: the same events a streamed reply gives."""
        out: list[StreamEvent] = []
        for c in self.choices or (Choice(0, self.text, self.reasoning, self.tool_calls, self.finish_reason),):
            if c.reasoning:
                out.append(ev.ReasoningDelta(c.reasoning, t_ns, c.index))
            if c.text:
                out.append(
                    ev.TextDelta(c.text, t_ns) if c.index == 0 else ev.ChoiceDelta(c.index, c.text, t_ns)
                )
            for call in c.tool_calls:
                out.append(ev.ToolCallDelta(call.index, call.id, call.name, call.arguments, t_ns, c.index))
        if self.usage is not None:
            out.append(ev.UsageEvent(self.usage, t_ns))
        finishes = {c.index: c.finish_reason for c in self.choices if c.finish_reason}
        out.append(ev.DoneEvent(self.finish_reason, self.server, t_ns, finishes))
        return out


def request_body(
    request: Request, *, stream: bool, chat_path: str, generate_path: str
) -> tuple[str, dict[str, Any]]:
    """The path and the body's common start: model, stream flag, then messages and tools (chat) or prompt."""
    body: dict[str, Any] = {"model": request.model, "stream": stream}
    if request.endpoint == "chat":
        body["messages"] = [m.as_dict() for m in request.messages]
        if request.tools:
            body["tools"] = [dict(t) for t in request.tools]
        return chat_path, body
    body["prompt"] = request.prompt
    return generate_path, body


def sampling(request: Request, max_tokens_key: str) -> dict[str, Any]:
    """The sampling settings the request sets, under the protocol's names (`max_tokens_key` differs)."""
    out: dict[str, Any] = {}
    for key, value in (
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("seed", request.seed),
        (max_tokens_key, request.max_tokens),
    ):
        if value is not None:
            out[key] = value
    if request.stop:
        out["stop"] = list(request.stop)
    return out


def arguments_text(value: Any) -> str:
    """Tool-call arguments as JSON text: a string (OpenAI's form, possibly a fragment) as sent, an object
    (Ollama's form) as compact JSON in the server's key order, nothing as ""."""
    if value is None:
        return ""
    if type(value) is str:
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def snippet(data: bytes | bytearray | memoryview | str, limit: int = SNIPPET_BYTES) -> str:
    """A short printable view of offending wire data for error messages."""
    if isinstance(data, str):
        try:
            # a baseline line keeps invalid UTF-8 as surrogateescape'd bytes: shown as the fast parser does
            raw = data.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = data.encode("utf-8", "replace")
    else:
        raw = bytes(data)
    text = raw[:limit].decode("utf-8", errors="replace")
    return repr(text) + ("..." if len(raw) > limit else "")


def malformed(
    what: str, data: bytes | bytearray | memoryview | str, exc: BaseException | None = None
) -> MalformedStreamError:
    reason = f": {exc}" if exc is not None else ""
    return MalformedStreamError(f"malformed {what}{reason}; received {snippet(data)}")


def error_text(err: Any) -> str:
    """The human message inside a protocol error object (`"error": "..."` or `"error": {"message": ...}`)."""
    if isinstance(err, str):
        return err
    if isinstance(err, Mapping):
        msg = err.get("message") or err.get("error") or err.get("detail")
        if isinstance(msg, str) and msg:
            extra = [str(err[k]) for k in ("type", "code") if err.get(k) not in (None, "")]
            return f"{msg} ({', '.join(extra)})" if extra else msg
        return json.dumps(err, default=str)[:300]
    return str(err)


def parse_error_body(body: bytes, limit: int = 300) -> str:
    """The server's message from an HTTP error body of either protocol, else the body text itself."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return text[:limit]
    if isinstance(obj, Mapping):
        for key in ("error", "detail", "message"):
            if key in obj:
                return error_text(obj[key])[:limit]
    return text[:limit]
