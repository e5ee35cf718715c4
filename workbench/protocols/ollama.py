"""Ollama's native protocol: request bodies, NDJSON stream parsers (fast and baseline), replies. No I/O.

One JSON object per line. Text is in `message.content` (/api/chat) or `response` (/api/generate), reasoning
("thinking" models, `think: true`) in `message.thinking` / `thinking` -> ReasoningDelta, tool calls whole in
`message.tool_calls` (arguments as an object) -> one ToolCallDelta each, numbered in stream order. The last
object has `done: true` and `done_reason` (stop, length; `load` / `unload` when a request with no messages
only loads or unloads the model for `keep_alive`), may itself carry text, and holds the server's counts and
nanosecond durations (`load_duration` is the model load a cold request paid). Unknown fields are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson

try:
    import msgspec
except ImportError:  # pragma: no cover
    msgspec = None  # type: ignore[assignment]

from workbench._exceptions import MalformedStreamError, ServerStreamError, StreamError, TruncatedStreamError
from workbench._types import (
    DoneEvent,
    ReasoningDelta,
    Request,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from workbench.protocols._common import (
    Completion,
    ParserState,
    PreparedRequest,
    error_text,
    malformed,
    request_body,
    sampling,
    snippet,
)
from workbench.protocols._lines import LineDecoder
from workbench.protocols._shape import (
    DEFAULT_MAX_EVENT_BYTES,
    baseline_object,
    loads_like_baseline,
    ollama_call,
    ollama_parts,
    reply_object,
    too_large,
)

__all__ = [
    "SERVER_FIELDS",
    "BaselineParser",
    "FastParser",
    "build_request",
    "parse_completion",
]

# Kept as server-side figures on DoneEvent.server (DESIGN.md "Metric definitions").
SERVER_FIELDS = (
    "created_at",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)
# Request.options keys that Ollama takes at the top level of the body; the rest go into `options`.
_TOP_LEVEL = frozenset(
    {"keep_alive", "format", "think", "raw", "system", "template", "context", "images", "suffix"}
)


def build_request(request: Request, *, stream: bool = True) -> PreparedRequest:
    path, body = request_body(request, stream=stream, chat_path="/api/chat", generate_path="/api/generate")
    options = sampling(request, "num_predict")
    for key, value in request.options.items():
        if key in _TOP_LEVEL:
            body[key] = value
        elif key == "options" and isinstance(value, Mapping):
            options.update(value)
        else:
            options[key] = value
    if options:
        body["options"] = options
    return PreparedRequest("POST", path, body)


# The fast path's schemas: only what an ordinary chunk needs. A field of another type (content not a string,
# message not an object, ...) is a schema error there, and the read goes on to the next path. Lean: a text
# chunk, where a `thinking` string is a schema error too, so text streams pay nothing for it; thinking: the
# same with `thinking` read. Tool calls (rare, sent whole) are left to the orjson path: any `tool_calls` key
# but null is a schema error in both.
if msgspec is not None:
    _Absent = msgspec.UnsetType | None

    class _Message(msgspec.Struct, gc=False):
        content: str | None = None
        thinking: _Absent = msgspec.UNSET
        tool_calls: _Absent = msgspec.UNSET

    class _Chunk(msgspec.Struct, gc=False):
        message: _Message | None = None
        response: str | None = None
        thinking: _Absent = msgspec.UNSET
        # A `done: true` line (which carries the server's figures) and an `error` key with any value at
        # all (UnsetType matches no JSON value) are schema errors, so the orjson path handles them.
        done: Literal[False] = False
        error: msgspec.UnsetType = msgspec.UNSET

    class _ThinkingMessage(msgspec.Struct, gc=False):
        content: str | None = None
        thinking: str | None = None
        tool_calls: _Absent = msgspec.UNSET

    class _ThinkingChunk(msgspec.Struct, gc=False):
        message: _ThinkingMessage | None = None
        response: str | None = None
        thinking: str | None = None
        done: Literal[False] = False
        error: msgspec.UnsetType = msgspec.UNSET

    _decode: Callable[[bytes], _Chunk] | None = msgspec.json.Decoder(_Chunk).decode
    _decode_thinking: Callable[[bytes], _ThinkingChunk] | None = msgspec.json.Decoder(_ThinkingChunk).decode
    _DecodeErrors: tuple[type[Exception], ...] = (msgspec.DecodeError, msgspec.ValidationError)
else:  # pragma: no cover - msgspec is a dependency; the per-line orjson path works without it
    _decode = _decode_thinking = None
    _DecodeErrors = ()


def _usage(obj: Mapping[str, Any]) -> Usage:
    return Usage(prompt_tokens=obj.get("prompt_eval_count"), completion_tokens=obj.get("eval_count"))


def _server(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: obj[k] for k in SERVER_FIELDS if k in obj}


def _parts(obj: Mapping[str, Any], line: bytes | bytearray | str) -> tuple[str | None, str | None, list[Any]]:
    """(text, thinking, tool calls) of a line, checked: the one place both dict paths read a line's output
    (see _shape.ollama_parts); the msgspec path reads the same fields through its schema."""
    return ollama_parts(obj, line)


class _Base(ParserState):
    """Tool-call numbering on top of the shared end-of-stream and error-stashing state."""

    __slots__ = ("_calls",)
    _ENDED_EARLY = "the Ollama stream ended before its final `done: true` object (connection closed early)"

    def __init__(self) -> None:
        super().__init__()
        self._calls = 0  # tool calls seen so far: Ollama sends each whole, numbered here in stream order

    def _output(
        self,
        text: str | None,
        thinking: str | None,
        calls: list[Any],
        t_ns: int,
        events: list[StreamEvent],
        line: bytes | bytearray | str,
    ) -> None:
        """A line's output as events: thinking first, then text, then one ToolCallDelta per whole call."""
        if thinking:
            events.append(ReasoningDelta(thinking, t_ns))
        if text:
            events.append(TextDelta(text, t_ns))
        for j, call in enumerate(calls):
            cid, name, args = ollama_call(call, j, line)
            events.append(ToolCallDelta(self._calls, cid, name, args, t_ns))
            self._calls += 1

    @staticmethod
    def _cut(line: bytes | bytearray | str) -> TruncatedStreamError:
        return TruncatedStreamError(f"the Ollama stream was cut in the middle of a line: {snippet(line)}")


class FastParser(_Base):
    """Byte-level NDJSON framing, one read's complete lines at a time.

    Fast path: the complete lines of a read are split at once and decoded by msgspec (mapped in C) into a
    schema of just the fields a chunk's text needs (msgspec still validates every byte of JSON, it only
    skips building objects for the fields we never read); a read with thinking in it is decoded again by
    the thinking schema. Anything unusual in the read (a blank line, a decode or schema error, non-UTF-8
    bytes, an `error` or `done` object, tool calls) sends the whole read down the per-line orjson path,
    which decides as the baseline does, so errors are reported per line and `done` lines keep their
    figures. Without msgspec installed, every read takes the per-line path.
    What orjson refuses and json.loads takes (a number too large for a float, 1e999; NaN) is judged by
    json.loads there too (_shape.loads_like_baseline), so both modes decide alike on every line.
    """

    __slots__ = ("_max", "_parts", "_pending")

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__()
        # an unfinished line: its reads, joined once when its LF comes (never re-joined per read)
        self._parts: list[bytes] = []
        self._pending = 0
        self._max = max_event_bytes

    def feed(self, data: bytes, t_ns: int) -> list[StreamEvent]:
        self._check()
        if self._done:
            return []
        end = data.rfind(b"\n") + 1
        if end == 0:
            self._parts.append(data)
            self._pending += len(data)
            if self._pending > self._max:
                err = self._too_large(b"".join(self._parts[:2]), self._pending, ended=False)
                self._parts, self._pending = [], 0
                self._fail(err, [])  # raises: no events to hand over first
            return []
        if self._parts:
            self._parts.append(data[:end])
            block = b"".join(self._parts)
            self._parts, self._pending = [], 0
        else:
            block = data if end == len(data) else data[:end]
        over: StreamError | None = None
        if len(block) > self._max:
            # only a block larger than the limit can hold a line over it: the usual read pays nothing
            block, over = self._cut_at_long_line(block)
        events = self._fast(block, t_ns) if _decode is not None and block else None
        if events is None:
            events = []
            try:
                self._lines(block, t_ns, events)
            except StreamError as exc:
                return self._fail(exc, events)
        if over is None and end < len(data) and not self._done:
            self._parts, self._pending = [data[end:]], len(data) - end
            if self._pending > self._max:
                over = self._too_large(self._parts[0], self._pending, ended=False)
        if over is not None and not self._done:
            self._parts, self._pending = [], 0
            return self._fail(over, events)
        return events

    def _too_large(self, line: bytes, size: int | None = None, *, ended: bool = True) -> StreamError:
        size = len(line) if size is None else size
        return too_large("NDJSON line", size, self._max, line[:200], ended=ended)

    def _cut_at_long_line(self, block: bytes) -> tuple[bytes, StreamError | None]:
        """The block up to its first line over the limit, and that line's error (None if there is none)."""
        pos = 0
        nl = block.find(b"\n")
        while nl >= 0:
            if nl - pos > self._max:
                return block[:pos], self._too_large(block[pos:nl])
            pos = nl + 1
            nl = block.find(b"\n", pos)
        return block, None

    @staticmethod
    def _fast(block: bytes, t_ns: int) -> list[StreamEvent] | None:
        """The read's events if every line is an ordinary text chunk, else None (nothing consumed)."""
        assert _decode is not None
        if not block.isascii():
            try:
                block.decode()  # orjson rejects invalid UTF-8 anywhere; msgspec only where it reads
            except UnicodeDecodeError:
                return None
        lines = block.split(b"\n")
        lines.pop()  # the block ends with LF
        try:
            # one strict decode per line (a blank line is an error here, and the orjson path skips it);
            # msgspec's decode_lines is not used: it reads whitespace-separated values, not lines
            chunks = list(map(_decode, lines))
        except _DecodeErrors:
            return FastParser._thinking(lines, t_ns)
        new = tuple.__new__
        # a comprehension: the per-line path of a fast stream (text from /api/chat or /api/generate)
        return [
            new(TextDelta, (text, t_ns))
            for c in chunks
            if (text := (m.content if (m := c.message) is not None else c.response))
        ]

    @staticmethod
    def _thinking(lines: list[bytes], t_ns: int) -> list[StreamEvent] | None:
        """A read with thinking in it (a thinking model, `think: true`), by the thinking schema."""
        assert _decode_thinking is not None
        try:
            chunks = list(map(_decode_thinking, lines))
        except _DecodeErrors:
            return None
        events: list[StreamEvent] = []
        for c in chunks:
            msg = c.message
            if msg is not None:
                text, thinking = msg.content, msg.thinking
            else:
                text, thinking = c.response, c.thinking
            if thinking:
                events.append(ReasoningDelta(thinking, t_ns))
            if text:
                events.append(TextDelta(text, t_ns))
        return events

    def _lines(self, block: bytes | bytearray, t_ns: int, events: list[StreamEvent]) -> None:
        pos = 0
        nl = block.find(b"\n")
        while nl >= 0 and not self._done:
            if nl > pos:
                self._line(block[pos:nl], t_ns, events)
            pos = nl + 1
            nl = block.find(b"\n", pos)

    def _line(self, line: bytes | bytearray, t_ns: int, events: list[StreamEvent]) -> None:
        if line.isspace() or not line:
            return
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            obj = loads_like_baseline(line, "Ollama NDJSON line", exc)
        if type(obj) is not dict:
            raise malformed("Ollama NDJSON line (not an object)", line)
        if "error" in obj:
            raise ServerStreamError(f"the server reported an error mid-stream: {error_text(obj['error'])}")
        text, thinking, calls = _parts(obj, line)
        self._output(text, thinking, calls, t_ns, events, line)
        if obj.get("done"):
            self._done = True
            events.append(UsageEvent(_usage(obj), t_ns))
            events.append(DoneEvent(obj.get("done_reason"), _server(obj), t_ns))

    def flush(self, t_ns: int = 0) -> list[StreamEvent]:
        self._check()
        events: list[StreamEvent] = []
        if self._parts and not self._done:
            line = b"".join(self._parts)
            self._parts, self._pending = [], 0
            try:
                self._line(line, t_ns, events)
            except MalformedStreamError:
                return self._fail(self._cut(line), events)
            except StreamError as exc:
                return self._fail(exc, events)
        return events


_JSON_SPACE = " \t\n\r\x0b\x0c"  # what bytes.isspace (the fast parser's blank-line test) takes for space


class BaselineParser(_Base):
    """What a typical client does: decode text, split lines (iter_lines), json.loads, a dict per chunk."""

    __slots__ = ("_lines",)

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__()
        self._lines = LineDecoder(max_event_bytes, "NDJSON line", cr_ends_line=False)

    def feed(self, data: bytes, t_ns: int) -> list[StreamEvent]:
        self._check()
        if self._done:
            return []
        events = self._handle(self._lines.decode(data), t_ns)
        overflow = self._lines.overflow
        if overflow is None or self._done or self._error is not None:
            return events
        return self._fail(overflow, events)

    def _handle(self, lines: list[str], t_ns: int) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for line in lines:
            if self._done:
                break
            if not line.strip(_JSON_SPACE):
                continue
            try:
                chunk = self._chunk(line)
                if chunk["thinking"] or chunk["tool_calls"]:
                    self._output(chunk["text"], chunk["thinking"], chunk["tool_calls"], t_ns, events, line)
                elif chunk["text"]:
                    events.append(TextDelta(chunk["text"], t_ns))
            except StreamError as exc:
                return self._fail(exc, events)
            if chunk["done"]:
                self._done = True
                events.append(UsageEvent(chunk["usage"], t_ns))
                events.append(DoneEvent(chunk["done_reason"], chunk["server"], t_ns))
        return events

    @staticmethod
    def _chunk(line: str) -> dict[str, Any]:
        obj = baseline_object(line, "Ollama NDJSON line")
        if "error" in obj:
            raise ServerStreamError(f"the server reported an error mid-stream: {error_text(obj['error'])}")
        message = obj.get("message")
        text, thinking, calls = _parts(obj, line)
        done = bool(obj.get("done", False))
        # the per-chunk record a typical client builds (cf. ollama-python's ChatResponse objects)
        return {
            "model": obj.get("model"),
            "created_at": obj.get("created_at"),
            "role": message.get("role") if isinstance(message, dict) else None,
            "text": text,
            "thinking": thinking,
            "tool_calls": calls,
            "done": done,
            "done_reason": obj.get("done_reason"),
            "usage": _usage(obj) if done else None,
            "server": _server(obj) if done else {},
        }

    def flush(self, t_ns: int = 0) -> list[StreamEvent]:
        self._check()
        if self._done:
            return []
        try:
            events = self._handle(self._lines.flush(), t_ns)
        except MalformedStreamError:
            events = []
        if isinstance(self._error, MalformedStreamError) and not self._lines.ended_with_newline:
            # the unterminated last line did not parse: it was cut, not malformed
            return self._fail(self._cut(self._lines.last_partial), events)
        self._check()
        return events


def parse_completion(body: bytes) -> Completion:
    """A non-streaming /api/chat or /api/generate reply (text, thinking, tool calls, server figures)."""
    obj = reply_object(body, "Ollama reply")
    if "error" in obj:
        raise ServerStreamError(f"the server reported an error: {error_text(obj['error'])}")
    text, thinking, calls = ollama_parts(obj, body, "Ollama reply")
    return Completion(
        text=text or "",
        finish_reason=obj.get("done_reason"),
        usage=_usage(obj),
        server=_server(obj),
        reasoning=thinking or "",
        tool_calls=tuple(ToolCall(j, *ollama_call(c, j, body, "Ollama reply")) for j, c in enumerate(calls)),
    )
