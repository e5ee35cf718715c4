"""Plain data shared by every layer: requests, stream events, results. No I/O here."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from workbench._exceptions import ConfigError

__all__ = [
    "Backend",
    "CacheKind",
    "ChunkRecord",
    "ChunkStamps",
    "DoneEvent",
    "Endpoint",
    "Message",
    "Metrics",
    "ProtocolName",
    "Request",
    "Status",
    "StreamEvent",
    "StreamResult",
    "TextDelta",
    "Timeouts",
    "Usage",
    "UsageEvent",
    "new_request_id",
]

ProtocolName = Literal["ollama", "openai"]
Endpoint = Literal["chat", "completion"]
Status = Literal["ok", "error", "cancelled"]
# `off`: no cache configured. `bypass`: a cache is configured but policy skipped it (e.g. temperature > 0).
CacheKind = Literal["off", "miss", "exact", "semantic", "bypass"]

_ids = itertools.count(1)
_pid = os.getpid()


def new_request_id() -> str:
    """Unique within the process and across processes (pid prefix); cheap enough for hot loops."""
    return f"req-{_pid:x}-{next(_ids)}"


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class Backend:
    """Where requests go. `protocol="auto"` asks the server which one it speaks.

    The API key is sent as a header only; it is left out of repr, results and saved state.
    `verify` is passed to httpx: True, False, or a path to a CA bundle (the simulator gives one).
    """

    url: str
    protocol: ProtocolName | Literal["auto"] = "auto"
    api_key: str | None = field(default=None, repr=False, compare=False)
    verify: bool | str = True
    name: str = ""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"backend URL {self.url!r} is not an http(s) URL",
                hint="use something like http://127.0.0.1:11434 or https://api.example.com",
            )
        if self.protocol not in ("ollama", "openai", "auto"):
            raise ConfigError(f"unknown protocol {self.protocol!r}", hint="use 'ollama', 'openai' or 'auto'")
        object.__setattr__(self, "url", self.url.rstrip("/"))

    @property
    def label(self) -> str:
        return self.name or self.url


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `None` disables a limit. Each one ends a stream with its own TimeoutError subclass."""

    connect: float | None = 10.0
    first_token: float | None = 120.0
    idle: float | None = 60.0
    total: float | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request, protocol-neutral. Build chat requests with `Request.chat(...)`.

    `endpoint="completion"` uses `prompt` (Ollama /api/generate, OpenAI /v1/completions);
    `endpoint="chat"` uses `messages`. `options` carries anything else the server understands.
    """

    model: str
    messages: tuple[Message, ...] = ()
    prompt: str | None = None
    endpoint: Endpoint = "chat"
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Mapping[str, Any], ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    include_usage: bool = True
    id: str = field(default_factory=new_request_id, compare=False)
    # Free-form labels carried into results and frames (variant, group, repeat, ...). Not sent.
    tags: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("request has no model", hint="pass model='...'")
        if self.endpoint == "chat" and not self.messages:
            raise ConfigError("chat request has no messages", hint="use Request.chat(model, 'your prompt')")
        if self.endpoint == "completion" and self.prompt is None:
            raise ConfigError("completion request has no prompt", hint="pass prompt='...'")

    @classmethod
    def chat(
        cls,
        model: str,
        prompt: str | Sequence[Message | Mapping[str, str]],
        *,
        system: str | None = None,
        **kwargs: Any,
    ) -> Request:
        msgs: list[Message] = []
        if system is not None:
            msgs.append(Message("system", system))
        if isinstance(prompt, str):
            msgs.append(Message("user", prompt))
        else:
            for m in prompt:
                msgs.append(m if isinstance(m, Message) else Message(m["role"], m["content"]))
        return cls(model=model, messages=tuple(msgs), endpoint="chat", **kwargs)

    @classmethod
    def completion(cls, model: str, prompt: str, **kwargs: Any) -> Request:
        return cls(model=model, prompt=prompt, endpoint="completion", **kwargs)

    @property
    def last_user_text(self) -> str:
        if self.endpoint == "completion":
            return self.prompt or ""
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return ""

    @property
    def prompt_chars(self) -> int:
        if self.endpoint == "completion":
            return len(self.prompt or "")
        return sum(len(m.content) for m in self.messages)


# ---- stream events (what parsers emit and clients yield) ----


# TextDelta and ChunkRecord are made once per chunk (hundreds of thousands per second on a fast stream), so
# they are NamedTuples, not frozen dataclasses: a frozen dataclass pays object.__setattr__ per field (~230 ns
# per event against ~150 ns, and ~75 ns for the parsers' `tuple.__new__` fast path). Same attribute names,
# positional order, keyword construction, immutability and isinstance; unlike a dataclass they also compare
# equal to a plain tuple of the same values and unpack like one.
class TextDelta(NamedTuple):
    """Output text carried by one chunk. `t_ns` is the arrival stamp of the read that completed the chunk."""

    text: str
    t_ns: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class UsageEvent:
    usage: Usage
    t_ns: int = 0


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """End of the protocol stream (`[DONE]` or Ollama `done: true`). `server` holds server-side figures."""

    finish_reason: str | None = None
    server: Mapping[str, Any] = field(default_factory=dict)
    t_ns: int = 0


StreamEvent = TextDelta | UsageEvent | DoneEvent


class ChunkRecord(NamedTuple):
    """One received protocol chunk (SSE event or NDJSON line), stamped on arrival (see TextDelta on why)."""

    t_ns: int
    text: str
    n_bytes: int = 0


# ---- results ----


@dataclass(frozen=True, slots=True)
class Metrics:
    """Per-request metrics exactly as DESIGN.md defines them. Times in ms from the send stamp."""

    ttfb_ms: float | None
    ttft_ms: float | None
    e2e_ms: float | None
    done_ms: float | None
    itl_ms: tuple[float, ...]
    tpot_ms: float | None
    output_tokens: int
    tokens_source: Literal["usage", "chunks"]
    tokens_per_s: float | None
    connect_ms: float | None
    connection_reused: bool | None
    bytes_received: int


@dataclass(slots=True)
class StreamResult:
    """Everything known about one request once it ended (ok, error or cancelled).

    Raw stamps are kept (`sent_ns`, `chunks`) so metrics can be recomputed; `metrics` holds the figures.
    Never contains the API key.
    """

    request: Request
    backend: str
    protocol: ProtocolName
    text: str
    status: Status
    metrics: Metrics
    sent_ns: int
    first_byte_ns: int | None
    end_ns: int
    chunks: list[ChunkRecord]
    finish_reason: str | None = None
    usage: Usage | None = None
    error: str | None = None
    error_kind: str | None = None
    http_version: str = ""
    server: dict[str, Any] = field(default_factory=dict)
    optimizations: dict[str, Any] = field(default_factory=dict)
    cache: CacheKind = "off"
    cache_similarity: float | None = None
    cache_matched_prompt: str | None = None
    saved_ms: float | None = None
    saved_tokens: int | None = None
    # Set when the stream was stopped: what was still received after the stop (for early_cancel).
    wasted_ms_after_stop: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def request_id(self) -> str:
        return self.request.id

    def chunk_texts(self) -> list[str]:
        return [c.text for c in self.chunks if c.text]


class ChunkStamps:
    """The Recorder's flat per-chunk stamps, turned into ChunkRecords only when `StreamResult.chunks` is read.

    A long stream has hundreds of thousands of chunks: building a record object for each while the
    stream runs (or at its end) costs as much as parsing it, mostly in garbage collection of the
    retained objects, and most results are only reduced to metrics. Two flat lists of ints and strs are
    invisible to the collector.
    """

    __slots__ = ("t_ns", "texts")

    def __init__(self, t_ns: list[int], texts: list[str]) -> None:
        self.t_ns = t_ns
        self.texts = texts

    def records(self) -> list[ChunkRecord]:
        new = tuple.__new__
        return [new(ChunkRecord, (t, text, 0)) for t, text in zip(self.t_ns, self.texts, strict=True)]


class _LazyChunks:
    """`StreamResult.chunks`: a plain list of ChunkRecord to readers, built from ChunkStamps on first read.

    Wraps the slot the dataclass made, so the constructor, assignment, equality, repr, copy and pickle
    (all of which go through the attribute) see a plain list.
    """

    def __init__(self, slot: Any) -> None:
        self._slot = slot

    def __get__(self, obj: StreamResult | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = self._slot.__get__(obj, owner)
        if type(value) is ChunkStamps:
            value = value.records()
            self._slot.__set__(obj, value)
        return value

    def __set__(self, obj: StreamResult, value: list[ChunkRecord] | ChunkStamps) -> None:
        self._slot.__set__(obj, value)


setattr(StreamResult, "chunks", _LazyChunks(StreamResult.__dict__["chunks"]))  # noqa: B010
