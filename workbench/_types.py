"""Plain data shared by every layer: requests, stream events, results. No I/O here."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

from workbench._exceptions import ConfigError

__all__ = [
    "Backend",
    "CacheKind",
    "Choice",
    "ChoiceDelta",
    "ChunkKind",
    "ChunkRecord",
    "ChunkStamps",
    "DoneEvent",
    "Endpoint",
    "Message",
    "Metrics",
    "ProtocolName",
    "ReasoningDelta",
    "Request",
    "Status",
    "StreamEvent",
    "StreamResult",
    "TextDelta",
    "Timeouts",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "UsageEvent",
    "new_request_id",
]

ProtocolName = Literal["ollama", "openai"]
Endpoint = Literal["chat", "completion"]
Status = Literal["ok", "error", "cancelled"]
# `off`: no cache configured. `bypass`: a cache is configured but policy skipped it (e.g. temperature > 0).
CacheKind = Literal["off", "miss", "exact", "semantic", "bypass"]
# What a recorded chunk carried for choice 0: answer text, reasoning ("thinking") text, or a tool-call piece.
ChunkKind = Literal["text", "reasoning", "tool_call"]


def new_request_id() -> str:
    """A random UUID as 32 bare hex digits: the one form of `X-Request-Id` every server accepts.

    llama-cpp-python's server (starlette-context) answers HTTP 400 with an empty body to any X-Request-Id that
    is not a UUID, so our own readable ids ("req-<pid>-<n>") broke every request to it. ~1 µs per request.
    """
    return uuid.uuid4().hex


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
    Credentials in the URL (``https://user:secret@host``) are taken out of it at construction: `url` (and so
    every result, repr, log line and error message) never holds them; they are kept in `auth` and sent as
    HTTP Basic authorization, as httpx would have sent them (an `api_key`, when also given, wins).
    `verify` is passed to httpx: True, False, or a path to a CA bundle (the simulator gives one).
    """

    url: str
    protocol: ProtocolName | Literal["auto"] = "auto"
    api_key: str | None = field(default=None, repr=False, compare=False)
    verify: bool | str = True
    name: str = ""
    auth: tuple[str, str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"backend URL {_without_userinfo(self.url)!r} is not an http(s) URL",
                hint="use something like http://127.0.0.1:11434 or https://api.example.com",
            )
        if self.protocol not in ("ollama", "openai", "auto"):
            raise ConfigError(f"unknown protocol {self.protocol!r}", hint="use 'ollama', 'openai' or 'auto'")
        url = self.url
        if "@" in parts.netloc:
            url = _without_userinfo(url)
            if self.auth is None:
                user, password = unquote(parts.username or ""), unquote(parts.password or "")
                object.__setattr__(self, "auth", (user, password))
        object.__setattr__(self, "url", url.rstrip("/"))

    @property
    def label(self) -> str:
        return self.name or self.url

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header for this backend's credentials ({} without any)."""
        if self.api_key:
            return {"Authorization": f"Bearer {self.api_key}"}
        if self.auth is not None:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode("ascii")
            return {"Authorization": f"Basic {token}"}
        return {}


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `None` disables a limit. Each one ends a stream with its own TimeoutError subclass.

    `first_token` and `total` run from the send stamp; `idle` from the last event (text, reasoning, a tool
    call, usage, done; or the first body byte while none came), so keep-alive lines cannot hold a stalled
    stream open. The defaults therefore end every stream that stops making progress: no stream runs
    forever unless both `first_token` and `idle` are turned off.
    """

    connect: float | None = 10.0
    first_token: float | None = 120.0
    idle: float | None = 60.0
    total: float | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request, protocol-neutral. Build chat requests with `Request.chat(...)`.

    `endpoint="completion"` uses `prompt` (Ollama /api/generate, OpenAI /v1/completions);
    `endpoint="chat"` uses `messages`. `options` carries anything else the server understands.
    `id` is sent as the `X-Request-Id` header: keep the default (a bare UUID hex), since some servers
    (llama-cpp-python) answer any other form with HTTP 400.
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
    """Output text of choice 0 carried by one chunk. `t_ns`: arrival stamp of the read that completed it."""

    text: str
    t_ns: int = 0


class ReasoningDelta(NamedTuple):
    """Reasoning ("thinking") text carried by one chunk, kept apart from the answer text.

    From OpenAI-style `delta.reasoning_content` (vLLM, SGLang, DeepSeek, llama.cpp) or `delta.reasoning`
    (newer vLLM, LM Studio, OpenRouter), and Ollama's `message.thinking` / `thinking`. `choice` is the choice
    index (> 0 only for the other choices of an n > 1 request).
    """

    text: str
    t_ns: int = 0
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """One piece of tool call `index` of a choice, as the server sent it.

    OpenAI-style servers stream a call in pieces: the first piece names it (`id`, `name`), later pieces carry
    `arguments` fragments to be joined in order. Ollama sends each call whole, its arguments object as JSON
    text. `StreamResult.tool_calls` holds the assembled calls.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    t_ns: int = 0
    choice: int = 0


class ChoiceDelta(NamedTuple):
    """Output text of choice `choice` >= 1 of a request that asked for several (`n > 1`).

    Choice 0 is the primary one: its text comes as TextDelta and drives the metrics; the others are kept per
    choice on `StreamResult.choices`, never mixed into the primary text.
    """

    choice: int
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
    """End of the protocol stream (`[DONE]` or Ollama `done: true`). `server` holds server-side figures.

    `finish_reason` is choice 0's; `finish_reasons` holds every choice's by index, for streams that carried
    several choices (n > 1), and is empty otherwise.
    """

    finish_reason: str | None = None
    server: Mapping[str, Any] = field(default_factory=dict)
    t_ns: int = 0
    finish_reasons: Mapping[int, str] = field(default_factory=dict)


StreamEvent = TextDelta | ReasoningDelta | ToolCallDelta | ChoiceDelta | UsageEvent | DoneEvent


class ChunkRecord(NamedTuple):
    """One received protocol chunk (SSE event or NDJSON line) of choice 0, stamped on arrival (see TextDelta).

    `text` is answer text only; a chunk that carried reasoning or a tool-call piece has `kind` "reasoning" or
    "tool_call" and empty `text` (its content is on `StreamResult.reasoning` / `.tool_calls`).
    """

    t_ns: int
    text: str
    n_bytes: int = 0
    kind: ChunkKind = "text"

    @property
    def is_output(self) -> bool:
        """Carried generated output (answer text, reasoning or a tool-call piece): counts as a token chunk."""
        return bool(self.text) or self.kind != "text"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call assembled from its ToolCallDelta pieces: `arguments` is the JSON text as the model wrote it
    (possibly incomplete if the stream was cut); `json.loads(call.arguments)` gives the object."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class Choice:
    """One choice of an n > 1 request, everything it produced."""

    index: int
    text: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None


# ---- results ----


@dataclass(frozen=True, slots=True)
class Metrics:
    """Per-request metrics exactly as DESIGN.md defines them. Times in ms from the send stamp.

    Token chunks are choice 0's chunks that carried generated output: answer text, reasoning text or a
    tool-call piece (see `workbench.metrics.recorder` for why reasoning counts). `first_text_ms` is the
    first chunk of answer text alone: it equals `ttft_ms` unless the model reasoned or called a tool first.
    """

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
    first_text_ms: float | None = None


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
    # Choice 0's reasoning text and assembled tool calls; `choices` holds every choice (0 included) when the
    # stream carried several (n > 1), and is empty otherwise.
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def request_id(self) -> str:
        return self.request.id

    def chunk_texts(self) -> list[str]:
        """The answer text of each chunk that carried some (reasoning and tool-call chunks left out)."""
        return [c.text for c in self.chunks if c.text]


class ChunkStamps:
    """The Recorder's flat per-chunk stamps, turned into ChunkRecords only when `StreamResult.chunks` is read.

    A long stream has hundreds of thousands of chunks: building a record object for each while the
    stream runs (or at its end) costs as much as parsing it, mostly in garbage collection of the
    retained objects, and most results are only reduced to metrics. Two flat lists of ints and strs are
    invisible to the collector. `kinds` stays None while every chunk is answer text (the usual stream).
    """

    __slots__ = ("kinds", "t_ns", "texts")

    def __init__(self, t_ns: list[int], texts: list[str], kinds: list[ChunkKind] | None = None) -> None:
        self.t_ns = t_ns
        self.texts = texts
        self.kinds = kinds

    def records(self) -> list[ChunkRecord]:
        new = tuple.__new__
        if self.kinds is None:
            return [new(ChunkRecord, (t, x, 0, "text")) for t, x in zip(self.t_ns, self.texts, strict=True)]
        return [
            new(ChunkRecord, (t, x, 0, k)) for t, x, k in zip(self.t_ns, self.texts, self.kinds, strict=True)
        ]


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
