"""OpenAI-compatible protocol (OpenAI, vLLM, llama.cpp, Ollama's /v1): bodies, SSE parsers, replies. No I/O.

Each SSE event's data is one JSON chunk; the stream ends with `data: [DONE]`. The first chat chunk carries
only the role (never a token), `finish_reason` arrives on the last choice chunk, and with
`stream_options.include_usage` a final chunk with `choices: []` carries the usage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import orjson

try:
    import msgspec
except ImportError:  # pragma: no cover
    msgspec = None  # type: ignore[assignment]

from workbench._exceptions import MalformedStreamError, ServerStreamError, StreamError, TruncatedStreamError
from workbench._types import DoneEvent, Request, StreamEvent, TextDelta, Usage, UsageEvent
from workbench.protocols._common import Completion, PreparedRequest, error_text, malformed
from workbench.protocols._lines import LineDecoder
from workbench.protocols.sse import SSEFramer, TextSSEFramer

__all__ = ["BaselineParser", "FastParser", "build_request", "parse_completion"]

_DONE = b"[DONE]"


def build_request(request: Request, *, stream: bool = True) -> PreparedRequest:
    body: dict[str, Any] = {"model": request.model, "stream": stream}
    if request.endpoint == "chat":
        path = "/v1/chat/completions"
        body["messages"] = [m.as_dict() for m in request.messages]
        if request.tools:
            body["tools"] = [dict(t) for t in request.tools]
    else:
        path = "/v1/completions"
        body["prompt"] = request.prompt
    for key, value in (
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("seed", request.seed),
        ("max_tokens", request.max_tokens),
    ):
        if value is not None:
            body[key] = value
    if request.stop:
        body["stop"] = list(request.stop)
    if stream and request.include_usage:
        body["stream_options"] = {"include_usage": True}
    body.update(request.options)
    return PreparedRequest("POST", path, body)


# The fast path's schema: only what an ordinary chunk needs (see ollama.py). A field of another type is a
# schema error there, and the read goes to the orjson path, which decides exactly as it always did.
if msgspec is not None:

    class _Delta(msgspec.Struct, gc=False):
        content: str | None = None

    class _Choice(msgspec.Struct, gc=False):
        delta: _Delta | None = None
        text: str | None = None
        finish_reason: str | None = None

    class _Chunk(msgspec.Struct, gc=False):
        choices: list[_Choice] | None = None
        usage: dict[str, Any] | None = None
        error: Any = None

    _decode: Callable[[bytes], _Chunk] | None = msgspec.json.Decoder(_Chunk).decode
    _DecodeErrors: tuple[type[Exception], ...] = (msgspec.DecodeError, msgspec.ValidationError)
else:  # pragma: no cover - msgspec is a dependency; the per-payload orjson path works without it
    _decode = None
    _DecodeErrors = ()


def _usage(obj: Mapping[str, Any]) -> Usage:
    return Usage(prompt_tokens=obj.get("prompt_tokens"), completion_tokens=obj.get("completion_tokens"))


class _Base:
    """End-of-stream state, the remembered finish_reason, and error stashing (see ollama._Base)."""

    __slots__ = ("_done", "_error", "_finish", "_server")

    def __init__(self) -> None:
        self._done = False
        self._error: StreamError | None = None
        self._finish: str | None = None
        self._server: dict[str, Any] = {}

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

    def _end(self, t_ns: int) -> DoneEvent:
        self._done = True
        return DoneEvent(self._finish, dict(self._server), t_ns)

    def _close(self) -> None:
        self._check()
        if not self._done:
            raise TruncatedStreamError(
                "the OpenAI stream ended before `data: [DONE]` (connection closed early)"
            )


class FastParser(_Base):
    """Byte-level SSE framing; a read's payloads decoded by msgspec (see `_fast`), orjson as fallback."""

    __slots__ = ("_sse",)

    def __init__(self) -> None:
        super().__init__()
        self._sse = SSEFramer()

    def feed(self, data: bytes, t_ns: int) -> list[StreamEvent]:
        self._check()
        if self._done:
            return []
        payloads = self._sse.feed(data)
        if not payloads:
            return []
        events = self._fast(payloads, t_ns) if _decode is not None else None
        return self._payloads(payloads, t_ns) if events is None else events

    def _fast(self, payloads: list[bytes], t_ns: int) -> list[StreamEvent] | None:
        """The read's events if every payload is an ordinary chunk, else None (state untouched).

        Each payload is decoded by msgspec into a schema of just the fields an ordinary chunk needs
        (see ollama.FastParser); `[DONE]`, error objects, schema surprises, non-UTF-8 bytes and the
        first chunk (whose id, model and created are kept) go to the per-payload orjson path. As there,
        a number too large for a float (1e999) in a field never read is accepted (json.loads, the
        baseline, accepts it too), where orjson rejected the chunk.
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
            return None
        events: list[StreamEvent] = []
        append = events.append
        new = tuple.__new__
        finish = self._finish
        for c in chunks:
            if c.error:
                return None
            choices = c.choices
            if choices:
                choice = choices[0]
                delta = choice.delta
                text = delta.content if delta is not None else choice.text
                if text:
                    append(new(TextDelta, (text, t_ns)))
                if choice.finish_reason:
                    finish = choice.finish_reason
            if c.usage:
                append(UsageEvent(_usage(c.usage), t_ns))
        self._finish = finish
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
            raise malformed("OpenAI SSE chunk", payload, exc) from None
        if type(obj) is not dict:
            raise malformed("OpenAI SSE chunk (not an object)", payload)
        if obj.get("error"):
            raise ServerStreamError(f"the server reported an error mid-stream: {error_text(obj['error'])}")
        if not self._server and "id" in obj:
            self._server = {k: obj[k] for k in ("id", "model", "created") if k in obj}
        choices = obj.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            text = delta.get("content") if delta is not None else choice.get("text")
            if text:
                events.append(TextDelta(text, t_ns))
            reason = choice.get("finish_reason")
            if reason:
                self._finish = reason
        usage = obj.get("usage")
        if usage:
            events.append(UsageEvent(_usage(usage), t_ns))

    def flush(self, t_ns: int = 0) -> list[StreamEvent]:
        self._check()
        if self._done:
            return []
        return self._payloads(self._sse.flush(), t_ns)

    def close(self, t_ns: int = 0) -> list[StreamEvent]:
        events = self.flush(t_ns)
        self._close()
        return events


class BaselineParser(_Base):
    """What a typical client does: iter_lines-style decoding, SSE fields on str, json.loads, a dict each."""

    __slots__ = ("_lines", "_sse")

    def __init__(self) -> None:
        super().__init__()
        self._lines = LineDecoder()
        self._sse = TextSSEFramer()

    def feed(self, data: bytes, t_ns: int) -> list[StreamEvent]:
        self._check()
        if self._done:
            return []
        return self._payloads(self._sse.feed_lines(self._lines.decode(data)), t_ns)

    def _payloads(self, payloads: list[str], t_ns: int) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for payload in payloads:
            if payload == "[DONE]":
                events.append(self._end(t_ns))
                break
            try:
                chunk = self._chunk(payload)
            except StreamError as exc:
                return self._fail(exc, events)
            if chunk["text"]:
                events.append(TextDelta(chunk["text"], t_ns))
            if chunk["finish_reason"]:
                self._finish = chunk["finish_reason"]
            if chunk["usage"] is not None:
                events.append(UsageEvent(chunk["usage"], t_ns))
        return events

    def _chunk(self, payload: str) -> dict[str, Any]:
        try:
            obj = json.loads(payload)
        except ValueError as exc:
            raise malformed("OpenAI SSE chunk", payload, exc) from None
        if not isinstance(obj, dict):
            raise malformed("OpenAI SSE chunk (not an object)", payload)
        if obj.get("error"):
            raise ServerStreamError(f"the server reported an error mid-stream: {error_text(obj['error'])}")
        if not self._server and "id" in obj:
            self._server = {k: obj[k] for k in ("id", "model", "created") if k in obj}
        choices = obj.get("choices") or []
        choice = choices[0] if choices else {}
        delta = choice.get("delta")
        usage = obj.get("usage")
        # the per-chunk record a typical client builds (cf. openai-python's ChatCompletionChunk)
        return {
            "id": obj.get("id"),
            "model": obj.get("model"),
            "role": delta.get("role") if delta else None,
            "text": (delta.get("content") if delta is not None else choice.get("text")) or "",
            "finish_reason": choice.get("finish_reason"),
            "usage": _usage(usage) if usage else None,
        }

    def flush(self, t_ns: int = 0) -> list[StreamEvent]:
        self._check()
        if self._done:
            return []
        # an unterminated last line was cut mid-line: dropped, like SSEFramer does
        lines = self._lines.flush(partial=False)
        return self._payloads(self._sse.feed_lines(lines) + self._sse.flush(), t_ns)

    def close(self, t_ns: int = 0) -> list[StreamEvent]:
        events = self.flush(t_ns)
        self._close()
        return events


def parse_completion(body: bytes) -> Completion:
    """A non-streaming /v1/chat/completions or /v1/completions reply."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise malformed("OpenAI reply", body, exc) from None
    if not isinstance(obj, dict):
        raise malformed("OpenAI reply (not an object)", body)
    if obj.get("error"):
        raise ServerStreamError(f"the server reported an error: {error_text(obj['error'])}")
    choices = obj.get("choices") or []
    choice = choices[0] if choices else {}
    msg = choice.get("message")
    text = (msg.get("content") if isinstance(msg, dict) else choice.get("text")) or ""
    if not isinstance(text, str):
        raise MalformedStreamError(f"OpenAI reply text is not a string: {type(text).__name__}")
    usage = obj.get("usage")
    server = {k: obj[k] for k in ("id", "model", "created") if k in obj}
    return Completion(
        text=text,
        finish_reason=choice.get("finish_reason"),
        usage=_usage(usage) if isinstance(usage, dict) else None,
        server=server,
    )
