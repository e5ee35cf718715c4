"""OpenAI-compatible protocol (OpenAI, vLLM, SGLang, TGI, llama.cpp, LM Studio, Ollama /v1): bodies, parsers.

Each SSE event's data is one JSON chunk; the stream ends with `data: [DONE]`. What real servers send, and
what becomes of it (tests/protocols/wire/ holds one recorded body per server):

- text in `choices[i].delta.content` (chat) or `choices[i].text` (completions) -> TextDelta (choice 0) or
  ChoiceDelta (the other choices of an n > 1 request: kept apart, never mixed into choice 0's text);
- reasoning in `delta.reasoning_content` (vLLM, SGLang, DeepSeek, llama.cpp) or `delta.reasoning` (newer
  vLLM, LM Studio, OpenRouter) -> ReasoningDelta (one text when a chunk carries both fields);
- tool calls in `delta.tool_calls[j]` pieces (index, id, function.name, function.arguments fragment)
  -> ToolCallDelta. TGI 2.x sends one object instead of a list; llama-cpp-python repeats id and name on
  every piece; the legacy `delta.function_call` duplicates `tool_calls` there and is not read;
- the role-only first chunk, `logprobs`, `obfuscation`, `system_fingerprint`, `stop_reason`, `service_tier`
  and any unknown field carry nothing for us;
- `finish_reason` (stop, length, tool_calls, content_filter, ...) on a choice's last chunk;
- usage in a last chunk with `choices: []` (`stream_options.include_usage`), on the finish chunk, on every
  chunk (vLLM's continuous usage: the last one wins), or nowhere (llama-cpp-python: the recorder then
  counts tokens by chunks, `tokens_source="chunks"`);
- llama.cpp's `timings` object -> DoneEvent.server["timings"] (its own prompt and generation timing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import orjson

try:
    import msgspec
except ImportError:  # pragma: no cover
    msgspec = None  # type: ignore[assignment]

from workbench._exceptions import MalformedStreamError, ServerStreamError, StreamError
from workbench._types import (
    Choice,
    ChoiceDelta,
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
)
from workbench.protocols._lines import LineDecoder
from workbench.protocols._shape import (
    DEFAULT_MAX_EVENT_BYTES,
    OPENAI_USAGE,
    OpenAIPiece,
    baseline_object,
    list_index,
    loads_like_baseline,
    openai_pieces,
    openai_record,
    reply_object,
    usage_ok,
)
from workbench.protocols.sse import SSEFramer, TextSSEFramer

__all__ = ["BaselineParser", "FastParser", "build_request", "parse_completion"]

_DONE = b"[DONE]"
_Piece = OpenAIPiece
_NO_PIECES: list[_Piece] = []  # shared, never mutated


def build_request(request: Request, *, stream: bool = True) -> PreparedRequest:
    path, body = request_body(
        request, stream=stream, chat_path="/v1/chat/completions", generate_path="/v1/completions"
    )
    body.update(sampling(request, "max_tokens"))
    if stream and request.include_usage:
        body["stream_options"] = {"include_usage": True}
    body.update(request.options)
    return PreparedRequest("POST", path, body)


# The fast path's schemas. A field of another type than declared is a schema error, and the read goes on to
# the next path; the orjson path at the end decides (and reports malformed chunks) exactly as the baseline.
# Lean: the usual chunk (one choice, choice 0, answer text only), exactly what an ordinary text chunk needs,
# so text streams pay next to nothing for the rest: any delta key but content and role (reasoning, tool calls,
# refusal, ...), timings (any value but null), a choice index other than 0 and several choices are schema
# errors there. Rich: every field events come from.
if msgspec is not None:
    _Absent = msgspec.UnsetType | None

    class _LeanDelta(msgspec.Struct, gc=False, forbid_unknown_fields=True):
        content: str | None = None
        role: Literal["assistant"] | None = None

    class _LeanChoice(msgspec.Struct, gc=False):
        index: Literal[0] | None = None
        delta: _LeanDelta | None = None
        text: str | None = None
        finish_reason: str | None = None

    class _LeanChunk(msgspec.Struct, gc=False):
        choices: Annotated[list[_LeanChoice], msgspec.Meta(max_length=1)] | None = None
        usage: dict[str, Any] | None = None
        timings: _Absent = msgspec.UNSET
        # an `error` key with any value at all (UnsetType matches no JSON value) is a schema error, so the
        # orjson path judges it (`"error": null` is no error there)
        error: msgspec.UnsetType = msgspec.UNSET

    class _Function(msgspec.Struct, gc=False):
        name: str | None = None
        arguments: str | None = None

    class _Tool(msgspec.Struct, gc=False):
        index: int | None = None
        id: str | None = None
        function: _Function | None = None

    class _Delta(msgspec.Struct, gc=False):
        content: str | None = None
        reasoning_content: str | None = None
        reasoning: str | None = None
        tool_calls: list[_Tool] | None = None

    class _Choice(msgspec.Struct, gc=False):
        index: int | None = None
        delta: _Delta | None = None
        text: str | None = None
        finish_reason: str | None = None

    class _Chunk(msgspec.Struct, gc=False):
        choices: list[_Choice] | None = None
        usage: dict[str, Any] | None = None
        timings: dict[str, Any] | None = None
        error: msgspec.UnsetType = msgspec.UNSET

    _decode: Callable[[bytes], _LeanChunk] | None = msgspec.json.Decoder(_LeanChunk).decode
    _decode_rich: Callable[[bytes], _Chunk] | None = msgspec.json.Decoder(_Chunk).decode
    _DecodeErrors: tuple[type[Exception], ...] = (msgspec.DecodeError, msgspec.ValidationError)
else:  # pragma: no cover - msgspec is a dependency; the per-payload orjson path works without it
    _decode = _decode_rich = None
    _DecodeErrors = ()


def _usage(obj: Mapping[str, Any]) -> Usage:
    return Usage(prompt_tokens=obj.get("prompt_tokens"), completion_tokens=obj.get("completion_tokens"))


def _record(obj: dict[str, Any], payload: bytes | str) -> dict[str, Any]:
    """The checked per-chunk record (see _shape.openai_record) after a mid-stream error object."""
    if obj.get("error"):
        raise ServerStreamError(f"the server reported an error mid-stream: {error_text(obj['error'])}")
    return openai_record(obj, payload)


class _Base(ParserState):
    """Finish reasons and server figures on top of the shared end-of-stream and error-stashing state."""

    __slots__ = ("_finish", "_finishes", "_multi", "_server", "_timings")
    _ENDED_EARLY = "the OpenAI stream ended before `data: [DONE]` (connection closed early)"

    def __init__(self) -> None:
        super().__init__()
        self._finish: str | None = None
        self._finishes: dict[int, str] = {}
        self._multi = False
        self._server: dict[str, Any] = {}
        self._timings: dict[str, Any] | None = None

    def _choice(
        self,
        index: int,
        text: str | None,
        reasoning: str | None,
        pieces: list[_Piece],
        finish: str | None,
        t_ns: int,
        events: list[StreamEvent],
    ) -> None:
        """One choice's part of a chunk, as events: reasoning first, then text, then tool-call pieces."""
        if index:
            self._multi = True
            if reasoning:
                events.append(ReasoningDelta(reasoning, t_ns, index))
            if text:
                events.append(ChoiceDelta(index, text, t_ns))
        else:
            if reasoning:
                events.append(ReasoningDelta(reasoning, t_ns))
            if text:
                events.append(TextDelta(text, t_ns))
        for j, cid, name, args in pieces:
            if cid or name or args:
                events.append(ToolCallDelta(j, cid or None, name or None, args, t_ns, index))
        if finish:
            self._finishes[index] = finish
            if not index:
                self._finish = finish

    def _object(self, obj: Any, payload: bytes | str, t_ns: int, events: list[StreamEvent]) -> None:
        """A chunk decoded by either path's JSON reader: checked, its server figures kept once, emitted."""
        if type(obj) is not dict:
            raise malformed("OpenAI SSE chunk (not an object)", payload)
        rec = _record(obj, payload)
        if not self._server and "id" in obj:
            self._server = _first(obj)
        self._emit(rec, t_ns, events)

    def _emit(self, rec: dict[str, Any], t_ns: int, events: list[StreamEvent]) -> None:
        """Events from a `_record`."""
        for index, _, text, reasoning, pieces, finish in rec["choices"]:
            if index or reasoning or pieces:
                self._choice(index, text, reasoning, pieces, finish, t_ns, events)
                continue
            if text:
                events.append(TextDelta(text, t_ns))
            if finish:
                self._choice(0, None, None, _NO_PIECES, finish, t_ns, events)
        if rec["usage"] is not None:
            events.append(UsageEvent(rec["usage"], t_ns))
        if rec["timings"] is not None:
            self._timings = rec["timings"]

    def _end(self, t_ns: int) -> DoneEvent:
        self._done = True
        server = dict(self._server)
        if self._timings is not None:
            server["timings"] = self._timings
        return DoneEvent(self._finish, server, t_ns, dict(self._finishes) if self._multi else {})


def _first(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: obj[k] for k in ("id", "model", "created") if k in obj}


class FastParser(_Base):
    """Byte-level SSE framing; a read's payloads decoded by msgspec (see `_fast`), orjson as fallback."""

    __slots__ = ("_sse",)

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__()
        self._sse = SSEFramer(max_event_bytes)

    def feed(self, data: bytes, t_ns: int) -> list[StreamEvent]:
        self._check()
        if self._done:
            return []
        sse = self._sse
        payloads = sse.feed(data)
        if not payloads:
            if sse.overflow is not None:
                self._fail(sse.overflow, [])  # raises: no events to hand over first
            return []
        events = self._fast(payloads, t_ns) if _decode is not None else None
        if events is None:
            events = self._payloads(payloads, t_ns)
        if sse.overflow is not None and not self._done and self._error is None:
            return self._fail(sse.overflow, events)
        return events

    def _fast(self, payloads: list[bytes], t_ns: int) -> list[StreamEvent] | None:
        """The read's events if every payload decodes by a msgspec schema, else None (state untouched).

        Each payload is decoded by the lean schema (see above), the whole read by the rich one if a payload
        does not fit it (see ollama.FastParser); `[DONE]`, error objects, schema surprises, non-UTF-8 bytes
        and the first chunk (whose id, model and created are kept) go to the per-payload orjson path, which
        hands what orjson refuses (1e999, NaN) to json.loads as the baseline does.
        """
        assert _decode is not None
        if not self._server:
            return None
        if not all(map(bytes.isascii, payloads)):
            try:
                # orjson rejects invalid UTF-8 anywhere, msgspec only where it reads; the LF keeps a
                # sequence cut at the end of one payload from being completed by the next
                b"\n".join(payloads).decode()
            except UnicodeDecodeError:
                return None
        try:
            chunks = list(map(_decode, payloads))
        except _DecodeErrors:
            return self._rich(payloads, t_ns)
        events: list[StreamEvent] = []
        append = events.append
        new = tuple.__new__
        for c in chunks:
            choices = c.choices
            if choices:
                # the lean schema admits one choice, choice 0, answer text only
                choice = choices[0]
                delta = choice.delta
                text = delta.content if delta is not None else choice.text
                if text:
                    append(new(TextDelta, (text, t_ns)))
                if choice.finish_reason:
                    self._choice(0, None, None, _NO_PIECES, choice.finish_reason, t_ns, events)
            if c.usage:
                if not usage_ok(c.usage, OPENAI_USAGE):
                    return None  # the shared check names the field (the dict path)
                append(UsageEvent(_usage(c.usage), t_ns))
        return events

    def _rich(self, payloads: list[bytes], t_ns: int) -> list[StreamEvent] | None:
        """A read with reasoning, tool calls, several choices or timings: every field, by the rich schema."""
        assert _decode_rich is not None
        try:
            chunks = list(map(_decode_rich, payloads))
        except _DecodeErrors:
            return None
        events: list[StreamEvent] = []
        for c in chunks:
            for pos, ch in enumerate(c.choices or ()):
                d = ch.delta
                if d is None:
                    text, reasoning, pieces = ch.text, None, _NO_PIECES
                else:
                    text, reasoning = d.content, d.reasoning_content or d.reasoning
                    pieces = [
                        (
                            list_index(tc.index, j),
                            tc.id,
                            None if tc.function is None else tc.function.name,
                            "" if tc.function is None else (tc.function.arguments or ""),
                        )
                        for j, tc in enumerate(d.tool_calls or ())
                    ]
                index = list_index(ch.index, pos)
                self._choice(index, text, reasoning, pieces, ch.finish_reason, t_ns, events)
            if c.usage:
                if not usage_ok(c.usage, OPENAI_USAGE):
                    return None
                events.append(UsageEvent(_usage(c.usage), t_ns))
            if c.timings:
                self._timings = c.timings
        return events

    def _payloads(self, payloads: list[bytes], t_ns: int) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        try:
            for payload in payloads:
                if payload == _DONE:
                    events.append(self._end(t_ns))
                    break
                self._chunk(payload, t_ns, events)
        except StreamError as exc:
            return self._fail(exc, events)
        return events

    def _chunk(self, payload: bytes, t_ns: int, events: list[StreamEvent]) -> None:
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            obj = loads_like_baseline(payload, "OpenAI SSE chunk", exc)
        self._object(obj, payload, t_ns, events)

    def flush(self, t_ns: int = 0) -> list[StreamEvent]:
        self._check()
        if self._done:
            return []
        return self._payloads(self._sse.flush(), t_ns)


class BaselineParser(_Base):
    """What a typical client does: iter_lines-style decoding, SSE fields on str, json.loads, a record each."""

    __slots__ = ("_lines", "_sse")

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__()
        self._lines = LineDecoder(max_event_bytes, "SSE event")
        self._sse = TextSSEFramer(max_event_bytes)

    def feed(self, data: bytes, t_ns: int) -> list[StreamEvent]:
        self._check()
        if self._done:
            return []
        lines, sse = self._lines, self._sse
        decoded = lines.decode(data)
        events = self._payloads(sse.feed_lines(decoded, lines.last_bytes or None), t_ns)
        if self._done or self._error is not None:
            return events
        sse.check_pending(lines.pending_bytes, lines.head)
        overflow = sse.overflow or lines.overflow
        return events if overflow is None else self._fail(overflow, events)

    def _payloads(self, payloads: list[str], t_ns: int) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for payload in payloads:
            if payload == "[DONE]":
                events.append(self._end(t_ns))
                break
            try:
                self._chunk(payload, t_ns, events)
            except StreamError as exc:
                return self._fail(exc, events)
        return events

    def _chunk(self, payload: str, t_ns: int, events: list[StreamEvent]) -> None:
        self._object(baseline_object(payload, "OpenAI SSE chunk"), payload, t_ns, events)

    def flush(self, t_ns: int = 0) -> list[StreamEvent]:
        self._check()
        if self._done:
            return []
        # an unterminated last line was cut mid-line: dropped, like SSEFramer does
        lines = self._lines.flush(partial=False)
        if self._sse.overflow is not None:
            return self._fail(self._sse.overflow, [])
        return self._payloads(self._sse.feed_lines(lines) + self._sse.flush(), t_ns)


def _calls(message: Mapping[str, Any], pos: int, body: bytes) -> tuple[ToolCall, ...]:
    """A whole reply's `message.tool_calls`."""
    at = f"choices[{pos}].message.tool_calls"
    pieces = openai_pieces(message.get("tool_calls"), at, body, "OpenAI reply")
    return tuple(ToolCall(j, cid or None, name or None, args) for j, cid, name, args in pieces)


def parse_completion(body: bytes) -> Completion:
    """A non-streaming /v1/chat/completions or /v1/completions reply (every choice, reasoning, tool calls)."""
    obj = reply_object(body, "OpenAI reply")
    if obj.get("error"):
        raise ServerStreamError(f"the server reported an error: {error_text(obj['error'])}")
    raw = obj.get("choices") or []
    if type(raw) is not list:
        raise malformed("OpenAI reply (choices is not a list)", body)
    choices: list[Choice] = []
    for pos, ch in enumerate(raw):
        if type(ch) is not dict:
            raise malformed("OpenAI reply (a choice is not an object)", body)
        msg = ch.get("message")
        if isinstance(msg, dict):
            text = msg.get("content")
            reasoning = msg.get("reasoning_content") or msg.get("reasoning")
            calls = _calls(msg, pos, body)
        else:
            text, reasoning, calls = ch.get("text"), None, ()
        if text is not None and not isinstance(text, str):
            raise MalformedStreamError(f"OpenAI reply text is not a string: {type(text).__name__}")
        finish = ch.get("finish_reason")
        choices.append(
            Choice(
                list_index(ch.get("index"), pos),
                text or "",
                reasoning if isinstance(reasoning, str) else "",
                calls,
                finish if isinstance(finish, str) else None,
            )
        )
    choices.sort(key=lambda c: c.index)
    first = next((c for c in choices if c.index == 0), Choice(0))
    usage, server, timings = obj.get("usage"), _first(obj), obj.get("timings")
    if timings and isinstance(timings, dict):
        server["timings"] = timings  # llama.cpp's own prompt and generation timing
    return Completion(
        text=first.text,
        finish_reason=first.finish_reason,
        usage=_usage(usage) if isinstance(usage, dict) else None,
        server=server,
        reasoning=first.reasoning,
        tool_calls=first.tool_calls,
        choices=tuple(choices) if len(choices) > 1 else (),
    )
